"""The figures of the remedies and of the MAE penalty's mechanism (notebook 10), in the style of
``ddkit.publish.plots``. Every interval drawn is a 95 % t interval over seed pairs (the forest)
or over seeds (the loss terms); the release's curves are one seed each, drawn without one.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ddkit.core.config import ABLATIONS, REMEDIES, REMEDY_CONTROLS
from ddkit.publish.map_plots import READING_COLORS
from ddkit.publish.plots import PALETTE, style

T_BAND = "95 % t interval over seed pairs"
CONTROL_COLOR = "#999999"


def _label(cell: str) -> str:
    return f"{cell} (ablation)" if cell in ABLATIONS else cell


def plot_remedy_forest(data: dict[str, pd.DataFrame], missing: pd.DataFrame | None = None,
                       names: dict[str, str] | None = None, title: str | None = None) -> Figure:
    """One panel per setting: SoftKD - cell (pt) with its t interval for plain SpectralKD-Last
    (the reference), every remedy (coloured by its reading) and the remedies' controls (grey,
    open); a planned cell with no runs yet is listed as "not trained yet" without a marker.
    ``data``: ``remedy_docs.tables``; ``missing``: ``remedy_docs.pending`` rows."""
    remedies, held, plain = data["remedies"], data["controls"], data["plain"]
    settings = list(dict.fromkeys([*remedies.get("setting", []), *held.get("setting", []),
                                   *([] if missing is None else missing["setting"])]))
    names = names or {}
    with style():
        if not settings:
            fig, ax = plt.subplots(figsize=(6.4, 2.4))
            ax.text(0.5, 0.5, "no remedy runs published yet", ha="center", va="center")
            ax.set_axis_off()
            return fig
        order = ["SpectralKD-Last (plain)", *REMEDIES, *REMEDY_CONTROLS]
        fig, axes = plt.subplots(1, len(settings), figsize=(4.4 * len(settings), 4.6),
                                 sharey=True, squeeze=False)
        for ax, setting in zip(axes[0], settings):
            rows = {}
            for r in plain[plain["setting"] == setting].to_dict("records"):
                rows["SpectralKD-Last (plain)"] = (r, PALETTE["SpectralKD-Last"], True)
            for r in remedies[remedies["setting"] == setting].to_dict("records"):
                rows[r["remedy"]] = (r, READING_COLORS.get(r["reading"], "#333333"), True)
            for r in held[held["setting"] == setting].to_dict("records"):
                rows[r["remedy"]] = (r, CONTROL_COLOR, False)
            waiting = set() if missing is None else set(
                missing.loc[missing["setting"] == setting, "cell"])
            if "SpectralKD-Last" in waiting:
                waiting.add("SpectralKD-Last (plain)")
            for i, cell in enumerate(order):
                if cell in rows:
                    r, color, filled = rows[cell]
                    ax.errorbar([r["estimate"]], [i], xerr=[[r["estimate"] - r["lo95"]],
                                                            [r["hi95"] - r["estimate"]]],
                                fmt="o", capsize=3, color=color,
                                markerfacecolor=color if filled else "white")
                elif cell in waiting:
                    ax.text(0.02, i, "not trained yet", transform=ax.get_yaxis_transform(),
                            va="center", fontsize=7, color="#777777", style="italic")
            ax.set_yticks(range(len(order)), [_label(c) for c in order], fontsize=7)
            ax.set_ylim(len(order) - 0.5, -0.5)
            ax.axvline(0, color="k", lw=0.8)
            if len(remedies):
                delta = float(remedies["sesoi"].iloc[0])
                ax.axvline(delta, color="k", lw=0.8, ls="--")
            ax.set_title(names.get(setting, setting), fontsize=9)
            ax.set_xlabel("SoftKD - cell, final top-1 (pt)\n> 0: behind SoftKD", fontsize=8)
        for reading, color in READING_COLORS.items():
            axes[0][-1].scatter([], [], color=color, label=reading)
        axes[0][-1].scatter([], [], facecolor="white", edgecolor=CONTROL_COLOR,
                            label="control (never counts)")
        axes[0][-1].plot([], [], color="k", lw=0.8, ls="--", label="δ")
        axes[0][-1].legend(fontsize=6, title=T_BAND, title_fontsize=6, loc="lower right")
        fig.suptitle(title or "the remedies as their sources define them, and their controls",
                     fontsize=10)
        fig.tight_layout()
    return fig


TERM_TITLES = {"train_loss_base": "(1-α)·CE", "train_loss_dist": "α·KD",
               "train_loss_fft": "w·feature (weighted)", "raw": "feature loss (raw, unweighted)"}


def plot_loss_terms(terms: pd.DataFrame, official: pd.DataFrame, weight: float = 0.2,
                    title: str | None = None) -> Figure:
    """Each loss term per fraction of the schedule: top row the kit's MAE settings
    (``mechanism.loss_terms``: mean over seeds with its t band, one line per setting and
    cell; the raw pair loss in the last panel), bottom row the release's MAE runs
    (``mechanism.official_loss_terms``, one seed; its raw feature loss is its logged
    ``train_loss_fft`` / ``weight``). A row whose terms are not published says so."""
    columns = ["train_loss_base", "train_loss_dist", "train_loss_fft", "raw"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with style():
        fig, axes = plt.subplots(2, len(columns), figsize=(3.3 * len(columns), 5.6),
                                 squeeze=False)
        kit = terms.assign(column=np.where(terms["term"].str.startswith("train_loss_feat/"),
                                           "raw", terms["term"]))
        lines = list(dict.fromkeys(zip(kit["setting"], kit["cell"])))
        for j, column in enumerate(columns):
            ax = axes[0][j]
            for k, (setting, cell) in enumerate(lines):
                g = kit[(kit["setting"] == setting) & (kit["cell"] == cell)
                        & (kit["column"] == column)]
                if g.empty:
                    continue
                color = colors[k % len(colors)]
                ax.plot(g["fraction"], g["mean"], marker=".", color=color,
                        ls="-" if cell == "SpectralKD-Last" else ":", label=f"{setting}: {cell}")
                ax.fill_between(g["fraction"], g["lo95"], g["hi95"], color=color, alpha=0.2)
            ax.set_title(f"kit: {TERM_TITLES[column]}", fontsize=8)
            if not lines:
                ax.text(0.5, 0.5, "not published yet\n(ddkit controls\nrepublishes curves.csv)",
                        ha="center", va="center", fontsize=7, transform=ax.transAxes)
            ax = axes[1][j]
            for k, (run, g) in enumerate(official.groupby("run", sort=False)):
                if column == "raw":
                    g = g[g["term"] == "train_loss_fft"].assign(value=lambda d: d["value"] / weight)
                    if run.startswith("SoftKD"):
                        continue
                else:
                    g = g[g["term"] == column]
                ax.plot(g["fraction"], g["value"], color=PALETTE.get(
                    run.removesuffix("-MAE"), colors[k]), label=f"release {run} (1 seed)")
            ax.set_title(f"release: {TERM_TITLES[column]}", fontsize=8)
            ax.set_xlabel("fraction of the schedule", fontsize=8)
        if lines:
            axes[0][0].legend(fontsize=6, title="mean over seeds, 95 % t band", title_fontsize=6)
        axes[1][0].legend(fontsize=6)
        fig.suptitle(title or "which loss term dominates when: the MAE teacher", fontsize=10)
        fig.tight_layout()
    return fig

