"""The figures of the phase map (notebook 09), in the style of ``ddkit.publish.plots``. Every interval
drawn is a 95 % t interval over seed pairs, except the fitted line's band (a pointwise 95 %
interval of the least-squares fit) and the boundary's (Fieller, 95 %), as their captions say.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from ddkit.publish.plots import PALETTE, style

T_BAND = "95 % t interval over seed pairs"
MARKERS = ("o", "s", "^", "D", "v", "P")
READING_COLORS = {"beats SoftKD": "#009E73", "non-inferior to SoftKD": "#56B4E9",
                  "still behind SoftKD": "#D55E00", "inconclusive": "#777777"}


def plot_teacher_dims(teachers: pd.DataFrame, widths: list[int] = (),
                      title: str | None = None) -> Figure:
    """Each teacher's data-set-level dimension per block (``phase_map.teacher_table``): the
    follow-up's (the 99th percentile of the per-image dimension in the shared uncentred basis)
    solid at 95 % energy, dashed at 90 %, one colour per task; the students' ``widths`` as grey
    lines."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with style():
        fig, ax = plt.subplots(figsize=(5.6, 3.8))
        for color, (task, g) in zip(colors, teachers.groupby("task", sort=False)):
            acc = g["acc1"].iloc[0]
            for energy, ls in ((0.95, "-"), (0.9, "--")):
                e = g[g["energy"] == energy].sort_values("layer")
                ax.plot(e["layer"], e["dim_followup"], ls=ls, marker=".", color=color,
                        label=f"{task} (top-1 {acc:.1f} %), {energy:.0%}")
        for width in widths:
            ax.axhline(width, color="#888888", lw=0.8, ls=":", zorder=0)
            ax.annotate(f"w={width}", (1.0, width), xycoords=("axes fraction", "data"),
                        xytext=(2, 0), textcoords="offset points", fontsize=6, va="center",
                        color="#666666")
        ax.set_xlabel("teacher block")
        ax.set_ylabel("follow-up dimension of the block's tokens (p99 over images)")
        ax.legend(fontsize=6, title="teacher, energy (dotted: student widths)", title_fontsize=6)
        ax.set_title(title or "how many dimensions each teacher's code needs", fontsize=10)
        fig.tight_layout()
    return fig


def plot_effect_vs_mismatch(points: pd.DataFrame, fits: dict, title: str | None = None) -> Figure:
    """One panel per aligned cell: each map point's SoftKD - cell effect (pt, with its t
    interval) against its last-pair encoding mismatch (log axis), one marker per task (the
    teacher), labelled by the student's width; the least-squares line with its pointwise 95 %
    band, the fitted boundary (effect 0) with its Fieller interval shaded, and the predicted
    boundary (mismatch 1) dotted. ``fits``: ``{cell: phase_map.Boundary or None}``."""
    cells = list(dict.fromkeys(points["cell"]))
    tasks = list(dict.fromkeys(points["task"]))
    with style():
        fig, axes = plt.subplots(1, len(cells), figsize=(5.2 * len(cells), 5.4), squeeze=False,
                                 sharey=True)
        for ax, cell in zip(axes[0], cells):
            rows = points[points["cell"] == cell]
            color = PALETTE.get(cell, "#333333")
            for marker, task in zip(MARKERS, tasks):
                g = rows[rows["task"] == task]
                ax.errorbar(g["ratio"], g["estimate"],
                            yerr=[g["estimate"] - g["lo95"], g["hi95"] - g["estimate"]],
                            fmt=marker, capsize=3, color=color, mfc="white" if "K=" not in task
                            else color, label=task)
                for r in g.itertuples():
                    ax.annotate(f"{r.width}", (r.ratio, r.estimate), fontsize=6,
                                xytext=(4, -8), textcoords="offset points")
            fit = fits.get(cell)
            if fit is not None:
                grid_x = np.geomspace(rows["ratio"].min() / 1.2, rows["ratio"].max() * 1.2, 100)
                line, lo, hi = fit.band(grid_x)
                ax.plot(grid_x, line, color="k", lw=1, label="least-squares fit")
                ax.fill_between(grid_x, lo, hi, color="k", alpha=0.1,
                                label="fit: pointwise 95 % band")
                if fit.bounded:
                    ax.axvspan(fit.lo, fit.hi, color=color, alpha=0.12,
                               label=f"boundary {fit.ratio:.2f} [{fit.lo:.2f}, {fit.hi:.2f}] (Fieller 95 %)")
                    ax.axvline(fit.ratio, color=color, lw=1)
            ax.axhline(0, color="k", lw=0.8)
            ax.axvline(1, color="k", lw=0.8, ls=":", label="predicted boundary (mismatch 1)")
            ax.set_xscale("log", base=2)
            # the points' range: a wide Fieller interval runs off the axis (its legend gives it)
            ax.set_xlim(rows["ratio"].min() / 1.4, rows["ratio"].max() * 1.4)
            ax.set_xlabel("mismatch: teacher dim (95 %) / student width")
            ax.set_title(f"SoftKD - {cell}", fontsize=9)
            ax.legend(fontsize=6, title=f"points: {T_BAND};\nnumbers: student width",
                      title_fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.18), ncols=2,
                      frameon=False)
        axes[0][0].set_ylabel("final top-1 gap (pt)\n> 0: alignment hurts")
        fig.suptitle(title or "phase map: where late alignment helps and hurts", fontsize=10)
        fig.tight_layout()
    return fig


def plot_map_grid(points: pd.DataFrame, cell: str = "SpectralKD-Last",
                  title: str | None = None) -> Figure:
    """Task (rows) × student width (columns): the SoftKD - ``cell`` effect as colour (red =
    alignment hurts, blue = it helps), each square annotated with the effect, its t interval
    and the mismatch ratio."""
    rows = points[points["cell"] == cell]
    tasks = list(dict.fromkeys(rows["task"]))
    widths = sorted(set(rows["width"]))
    grid = np.full((len(tasks), len(widths)), np.nan)
    for r in rows.itertuples():
        grid[tasks.index(r.task), widths.index(r.width)] = r.estimate
    bound = max(float(np.nanmax(np.abs(grid))), 0.1) if np.isfinite(grid).any() else 1.0
    with style():
        fig, ax = plt.subplots(figsize=(1.3 * len(widths) + 2.2, 0.95 * len(tasks) + 1.6))
        image = ax.imshow(grid, cmap="RdBu_r", norm=TwoSlopeNorm(0, -bound, bound), aspect="auto")
        ax.grid(False)
        for r in rows.itertuples():
            ax.text(widths.index(r.width), tasks.index(r.task),
                    f"{r.estimate:+.2f}\n[{r.lo95:+.2f}, {r.hi95:+.2f}]\nratio {r.ratio:.2f}",
                    ha="center", va="center", fontsize=6,
                    color="white" if abs(r.estimate) > 0.6 * bound else "black")
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_yticks(range(len(tasks)), tasks)
        ax.set_xlabel("student width")
        fig.colorbar(image, ax=ax, label=f"SoftKD - {cell} (pt)")
        ax.set_title(title or f"SoftKD - {cell} by task and width ({T_BAND})", fontsize=9)
        fig.tight_layout()
    return fig


def plot_remedies(table: pd.DataFrame, plain: pd.DataFrame | None = None,
                  title: str | None = None) -> Figure:
    """A forest of SoftKD - remedy (pt, with its t interval), one row per (setting, remedy),
    coloured by reading; plain late alignment (``plain``: rows with setting, estimate, lo95,
    hi95) as the reference row of each setting; 0 and the SESOI δ marked."""
    rows = []
    for setting, g in table.groupby("setting", sort=False):
        if plain is not None:
            rows += [("SpectralKD-Last (plain)", setting, r) for r in
                     plain[plain["setting"] == setting].to_dict("records")]
        rows += [(r["remedy"], setting, r) for r in g.to_dict("records")]
    with style():
        fig, ax = plt.subplots(figsize=(6.6, 0.34 * len(rows) + 1.4))
        for i, (name, setting, r) in enumerate(rows):
            color = READING_COLORS.get(r.get("reading"), "#333333")
            ax.errorbar([r["estimate"]], [i], xerr=[[r["estimate"] - r["lo95"]], [r["hi95"] - r["estimate"]]],
                        fmt="o", capsize=3, color=color)
        ax.set_yticks(range(len(rows)), [f"{setting}: {name}" for name, setting, _ in rows],
                      fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.8)
        if len(table):
            delta = float(table["sesoi"].iloc[0])
            ax.axvline(delta, color="k", lw=0.8, ls="--", label=f"δ = {delta:.2f} pt")
        for reading, color in READING_COLORS.items():
            ax.scatter([], [], color=color, label=reading)
        ax.set_xlabel("SoftKD - method, final top-1 (pt; > 0 = behind SoftKD)")
        ax.legend(fontsize=6, title=f"{T_BAND}", title_fontsize=6, loc="best")
        ax.set_title(title or "remedies where late alignment hurts", fontsize=10)
        fig.tight_layout()
    return fig


def plot_gap_by_phase(gap_curves: pd.DataFrame, points: pd.DataFrame,
                      title: str | None = None) -> Figure:
    """One panel per task: each point's SoftKD - SpectralKD-Last gap per fraction of the schedule
    (mean over seed pairs; ``control_verdicts.gap_curve`` rows with ``setting``), coloured by
    the point's mismatch (log scale); above 0 = late alignment behind at that epoch."""
    ratio = points.drop_duplicates("setting").set_index("setting")[["task", "ratio", "width"]]
    tasks = list(dict.fromkeys(ratio["task"]))
    norm = plt.matplotlib.colors.LogNorm(ratio["ratio"].min(), ratio["ratio"].max())
    cmap = plt.get_cmap("coolwarm")
    with style():
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.6), sharey=True,
                                 squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for setting, g in gap_curves.groupby("setting", sort=False):
                if setting not in ratio.index or ratio.loc[setting, "task"] != task:
                    continue
                r = ratio.loc[setting]
                ax.plot(g["fraction"], g["gap"], marker=".", color=cmap(norm(r["ratio"])),
                        label=f"width {r['width']} (mismatch {r['ratio']:.2f})")
            ax.axhline(0, color="k", lw=0.8)
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("fraction of the schedule")
            ax.legend(fontsize=6, title="mean over seed pairs", title_fontsize=6,
                      loc="upper left", bbox_to_anchor=(0, -0.2), frameon=False)
        axes[0][0].set_ylabel("SoftKD - SpectralKD-Last (pt)\n> 0: alignment behind")
        fig.suptitle(title or "when in training late alignment helps or hurts", fontsize=10)
        fig.tight_layout()
    return fig


SIDE_COLORS = {"above 1": "#D55E00", "below 1": "#0072B2"}


def plot_sign_test(points: pd.DataFrame, rule: pd.DataFrame, official: pd.DataFrame | None = None,
                   delta: float | None = None, title: str | None = None) -> Figure:
    """The follow-up's prediction as the rule judges it (``studies.map_rule``), one panel per
    cell of ``rule``: each point's SoftKD - cell effect (its 95 % t interval over seed pairs)
    against the follow-up's mismatch (log axis), coloured by its side of 1; each side's pooled
    random-effects mean with its 95 % interval as a band over the side's range; δ dashed; and,
    in black, the release's ImageNet settings on the same axis (``official``:
    ``reference.official_mismatch_points``; one seed each, no interval; the MAE teacher's ratio
    is a range because the release does not say which MAE it used)."""
    cells = list(dict.fromkeys(c.split("SoftKD - ")[1].split(" pooled")[0] for c in rule["variant"]))
    with style():
        fig, axes = plt.subplots(1, len(cells), figsize=(5.6 * len(cells), 5.6), squeeze=False,
                                 sharey=True)
        for ax, cell in zip(axes[0], cells):
            rows = points[points["cell"] == cell]
            for side, color in SIDE_COLORS.items():
                g = rows[rows["side"] == side]
                ax.errorbar(g["ratio"], g["estimate"],
                            yerr=[g["estimate"] - g["lo95"], g["hi95"] - g["estimate"]],
                            fmt="o", capsize=2, color=color, ms=4,
                            label=f"points {side} ({T_BAND})")
                part = rule[rule["variant"].str.contains(f"SoftKD - {cell} pooled")
                            & rule["variant"].str.startswith("harm above" if side == "above 1"
                                                             else "no harm below")]
                if len(g) and len(part):
                    r = part.iloc[0]
                    x0, x1 = (1.0, g["ratio"].max() * 1.15) if side == "above 1" else \
                        (g["ratio"].min() / 1.15, 1.0)
                    ax.fill_between([x0, x1], r["lo95"], r["hi95"], color=color, alpha=0.15)
                    ax.plot([x0, x1], [r["estimate"]] * 2, color=color, lw=2,
                            label=f"pooled {side}: {r['estimate']:+.2f} "
                                  f"[{r['lo95']:+.2f}, {r['hi95']:+.2f}] ({r['verdict']})")
            if official is not None:
                o = official[official["cell"] == cell]
                for r in o.itertuples():
                    xerr = [[r.ratio - r.ratio_lo], [r.ratio_hi - r.ratio]]
                    ax.errorbar([r.ratio], [r.estimate], xerr=xerr, fmt="*", ms=9, color="k",
                                capsize=3, label=f"release: {r.setting} ({r.estimate:+.2f})")
            if delta is not None:
                ax.axhline(delta, color="#555555", lw=0.8, ls="--", label=f"δ = {delta:.2f} pt")
            ax.axhline(0, color="k", lw=0.8)
            ax.axvline(1, color="k", lw=0.8, ls=":", label="predicted sign change (mismatch 1)")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("mismatch: follow-up dim (p99, 95 %) / width", fontsize=8)
            ax.set_title(f"SoftKD - {cell}", fontsize=9)
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.2), frameon=False)
        axes[0][0].set_ylabel("final top-1 gap (pt)\n> 0: alignment hurts")
        fig.suptitle(title or "does late alignment hurt above a mismatch of 1 and not below?",
                     fontsize=10)
        fig.tight_layout()
    return fig


def plot_map_k(points: pd.DataFrame, title: str | None = None) -> Figure:
    """The controlled-dimension design: per aligned cell, SoftKD - cell (95 % t interval over
    seed pairs) against the ratio of the projected target's follow-up dimension to the
    student's (fixed) width, one line per task and width through its ranks k (labelled)."""
    cells = list(dict.fromkeys(points["cell"]))
    groups = points[["task", "width"]].drop_duplicates().sort_values(["task", "width"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with style():
        fig, axes = plt.subplots(1, len(cells), figsize=(5.4 * len(cells), 4.8), squeeze=False,
                                 sharey=True)
        for ax, cell in zip(axes[0], cells):
            for color, (task, width) in zip(colors, groups.itertuples(index=False)):
                g = points[(points["cell"] == cell) & (points["task"] == task)
                           & (points["width"] == width)].sort_values("ratio")
                ax.errorbar(g["ratio"], g["estimate"],
                            yerr=[g["estimate"] - g["lo95"], g["hi95"] - g["estimate"]],
                            fmt="-o", ms=4, capsize=2, color=color,
                            label=f"{task}, width {width}")
                for r in g.itertuples():
                    ax.annotate(f"k={int(r.target_rank)}", (r.ratio, r.estimate), fontsize=5,
                                xytext=(3, 3), textcoords="offset points", color=color)
            ax.axhline(0, color="k", lw=0.8)
            ax.axvline(1, color="k", lw=0.8, ls=":", label="predicted sign change")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("target's follow-up dim / width (width fixed per line)", fontsize=8)
            ax.set_title(f"SoftKD - {cell}", fontsize=9)
            ax.legend(fontsize=6, title=f"points: {T_BAND}", title_fontsize=6)
        axes[0][0].set_ylabel("final top-1 gap (pt)\n> 0: alignment hurts")
        fig.suptitle(title or "width fixed, the target's dimension varied (MAP-k)", fontsize=10)
        fig.tight_layout()
    return fig


def plot_per_image_dims(dims, title: str) -> Figure:
    """The follow-up's metric on one block (``mismatch.followup_dim``): the histogram of the
    per-image dimension d over images (one bar per d), its 99th percentile (the follow-up's
    number) dashed and the global uncentred dimension dotted."""
    per_image = np.asarray(dims.per_image)
    with style():
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        edges = np.arange(per_image.min(), per_image.max() + 2) - 0.5
        ax.hist(per_image, bins=edges, color="#0072B2", alpha=0.8)
        ax.axvline(dims.quantile, color="k", ls="--", lw=1.2,
                   label=f"99th percentile: {dims.quantile:.1f} (the follow-up's dimension)")
        ax.axvline(dims.global_dim, color="#D55E00", ls=":", lw=1.4,
                   label=f"global (top-d eigenvalues hold 95 %): {dims.global_dim}")
        ax.set_xlabel(f"shared directions an image needs for 95 % of its energy (of {dims.width})")
        ax.set_ylabel("images")
        ax.legend(fontsize=6)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
    return fig
