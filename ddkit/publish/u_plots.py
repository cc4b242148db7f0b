"""The figures of the U's formation (notebook 11), in the style of ``ddkit.publish.plots``: the U
depth against the fraction of training done, with the interval each row of the table names
(over seeds, over images, or none for a single run)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ddkit.publish.plots import style

U = "U depth"


def plot_teacher_u(table: pd.DataFrame, sesoi: float, title: str | None = None) -> Figure:
    """Every shipped teacher's U depth over its training (one run: points, no interval) and at
    its final weights with the interval over images (an error bar), beside the release's SoftKD
    student (one run); C1's SESOI dashed. Above 0: an interior block lies below both ends."""
    rows = table[table["statistic"] == U]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with style():
        fig, ax = plt.subplots(figsize=(6.2, 4.0))
        teachers = rows[rows["source"] == "shipped teacher"]
        for color, (model, g) in zip(colors, teachers.groupby("model", sort=False)):
            curve = g[g["interval"] == "none"].sort_values("progress")
            final = g[g["interval"] == "images"]
            ax.plot(curve["progress"], curve["estimate"], marker=".", color=color,
                    label=f"{model} ({int(g['depth'].iloc[0])} blocks)")
            for r in final.itertuples():
                ax.errorbar([1.0], [r.estimate], yerr=[[r.estimate - r.lo95], [r.hi95 - r.estimate]],
                            fmt="s", ms=4, capsize=3, color=color)
        official = rows[(rows["source"] == "release") & (rows["cell"] == "SoftKD")].sort_values("progress")
        ax.plot(official["progress"], official["estimate"], color="k", lw=1.2, ls="--",
                label="release: SoftKD student, DeiT-Tiny (12 blocks)")
        ax.axhline(0, color="k", lw=0.8)
        ax.axhline(sesoi, color="#777777", lw=0.8, ls=":", label=f"C1's SESOI ({sesoi:.3f} bits)")
        ax.set_xlabel("fraction of training done")
        ax.set_ylabel("U depth (bits)\n> 0: a U")
        ax.legend(fontsize=6, title="squares at 1.0: final weights, 95 % interval over 200 images",
                  title_fontsize=6, loc="lower left")
        ax.set_title(title or "which teachers form an entropy U over training", fontsize=9)
        fig.tight_layout()
    return fig


def plot_u_formation(table: pd.DataFrame, sesoi: float, title: str | None = None) -> Figure:
    """The depth design: per depth (a panel), the U depth of each cell's students against the
    fraction of training done, the band its 95 % interval over seeds (the intersection-union
    bound of C1), beside the release's SoftKD and SpectralKD-Last students (one run each)."""
    rows = table[(table["statistic"] == U) & (table["source"] == "depth design")]
    depths = sorted(rows["depth"].unique())
    official = table[(table["statistic"] == U) & (table["source"] == "release")]
    colors = {"no-KD": "#777777", "SoftKD": "#0072B2", "SpectralKD-Last": "#D55E00"}
    with style():
        fig, axes = plt.subplots(1, max(1, len(depths)), figsize=(4.2 * max(1, len(depths)), 3.8),
                                 squeeze=False, sharey=True)
        for ax, depth in zip(axes[0], depths):
            for cell, g in rows[rows["depth"] == depth].groupby("cell", sort=False):
                g = g.sort_values("progress")
                color = colors.get(cell, "#333333")
                ax.plot(g["progress"], g["estimate"], marker=".", color=color,
                        label=f"{cell} (n = {int(g['n'].max())} seeds)")
                ax.fill_between(g["progress"], g["lo95"], g["hi95"], color=color, alpha=0.15)
            for cell, g in official.groupby("cell", sort=False):
                g = g.sort_values("progress")
                ax.plot(g["progress"], g["estimate"], color=colors.get(cell, "k"), lw=1, ls="--",
                        label=f"release {cell} (12 blocks, one run)")
            ax.axhline(0, color="k", lw=0.8)
            ax.axhline(sesoi, color="#777777", lw=0.8, ls=":", label=f"SESOI {sesoi:.3f} bits")
            ax.set_title(f"students with {depth} blocks", fontsize=9)
            ax.set_xlabel("fraction of training done")
        axes[0][0].set_ylabel("U depth (bits), band: 95 % over seeds")
        axes[0][-1].legend(fontsize=6, loc="lower right")
        fig.suptitle(title or "where the entropy U forms: depth x training length", fontsize=10)
        fig.tight_layout()
    return fig
