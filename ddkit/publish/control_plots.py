"""The figures of the negative-transfer controls (notebook 08), in the style of ``ddkit.publish.plots``.
Every interval drawn is a t interval over seeds (95 %), except where a caption says otherwise.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ddkit.publish.plots import PALETTE, style
from ddkit.verdicts.stats import mean_ci

T_BAND = "95 % t interval over seeds"


def _mean_ci_rows(values: pd.Series) -> tuple[float, float, float]:
    ci = mean_ci(values.to_numpy(np.float64)) if len(values) > 1 else None
    mean = float(values.mean())
    return (mean, ci.lo, ci.hi) if ci is not None else (mean, mean, mean)


def plot_accuracy_by_setting(results: pd.DataFrame, order: list[str] | None = None,
                             title: str | None = None) -> Figure:
    """Final top-1 of every run (dots) and each cell's mean with its t interval, per setting
    (in ``order`` when given)."""
    with style():
        present = set(results["setting"])
        settings = [s for s in (order or dict.fromkeys(results["setting"])) if s in present]
        cells = list(dict.fromkeys(results["cell"]))
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(settings)), 3.8))
        width = 0.8 / len(cells)
        for j, cell in enumerate(cells):
            for i, setting in enumerate(settings):
                rows = results[(results["setting"] == setting) & (results["cell"] == cell)]
                if rows.empty:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                mean, lo, hi = _mean_ci_rows(rows["final_acc1"])
                ax.scatter(np.full(len(rows), x), rows["final_acc1"], s=10, alpha=0.5,
                           color=PALETTE.get(cell, "#777777"))
                ax.errorbar([x], [mean], yerr=[[mean - lo], [hi - mean]], fmt="o", capsize=3,
                            color=PALETTE.get(cell, "#777777"), label=cell if i == 0 or
                            cell not in ax.get_legend_handles_labels()[1] else None)
        ax.set_xticks(range(len(settings)), [s.replace(", ", ",\n") for s in settings],
                      fontsize=8)
        ax.set_ylabel("final top-1 (%)")
        ax.legend(fontsize=8, title=f"cell (mean, {T_BAND})", title_fontsize=8)
        ax.set_title(title or "controls: final top-1 by setting")
        fig.tight_layout()
    return fig


def plot_gap_curves(curves: pd.DataFrame, official: pd.DataFrame | None = None,
                    title: str | None = None) -> Figure:
    """SoftKD - aligned-cell gap per fraction of the schedule, one line per setting with its
    t band over seed pairs (``control_verdicts.gap_curve`` rows); the official one-seed curves
    (``official``: run, fraction, gap) dashed. Above 0 = late alignment behind."""
    with style():
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for (setting, cell), g in curves.groupby(["setting", "cell"], sort=False):
            line, = ax.plot(g["fraction"], g["gap"], marker=".", label=f"{setting}: {cell}")
            ax.fill_between(g["fraction"], g["lo95"], g["hi95"], alpha=0.2,
                            color=line.get_color())
        if official is not None:
            for run, g in official.groupby("run", sort=False):
                ax.plot(g["fraction"], g["gap"], ls="--", lw=1, label=f"official {run} (1 seed)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("fraction of the schedule")
        ax.set_ylabel("SoftKD - aligned, top-1 (pt)")
        ax.legend(fontsize=7, title=f"bands: {T_BAND}", title_fontsize=7)
        ax.set_title(title or "when late alignment falls behind")
        fig.tight_layout()
    return fig


def plot_dose(dose: pd.DataFrame, title: str | None = None) -> Figure:
    """SoftKD - SpectralKD-Last against the feature weight (log axis), with t intervals."""
    with style():
        fig, ax = plt.subplots(figsize=(5.0, 3.6))
        ax.errorbar(dose["feature_weight"], dose["estimate"],
                    yerr=[dose["estimate"] - dose["lo95"], dose["hi95"] - dose["estimate"]],
                    fmt="o-", capsize=3, color=PALETTE["SpectralKD-Last"])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("feature weight w (log)")
        ax.set_ylabel("SoftKD - SpectralKD-Last (pt)")
        ax.set_title(title or f"dose-response ({T_BAND})")
        fig.tight_layout()
    return fig


def plot_effect_vs_mismatch(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Each setting's SoftKD - SpectralKD-Last effect (with its t interval) against its
    last-layer mismatch ratio (the follow-up dimension at 95 % / student width); rows of
    ``control_verdicts.effect_vs_mismatch``."""
    with style():
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        for profile, g in table.groupby("profile", sort=False):
            ax.errorbar(g["ratio"], g["estimate"],
                        yerr=[g["estimate"] - g["lo95"], g["hi95"] - g["estimate"]],
                        fmt="o", capsize=3, label=profile)
            for r in g.itertuples():
                ax.annotate(r.setting, (r.ratio, r.estimate), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(1, color="k", lw=0.8, ls=":")
        ax.set_xlabel("last-layer mismatch: follow-up dim (p99, 95 %) / student width")
        ax.set_ylabel("SoftKD - SpectralKD-Last (pt)")
        ax.legend(fontsize=7, title=f"profile ({T_BAND})", title_fontsize=7)
        ax.set_title(title or "does the mismatch separate help from harm?")
        fig.tight_layout()
    return fig
