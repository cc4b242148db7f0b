"""One function per figure, one style. Figures are drawn only from tidy tables (or, for spectra,
from the metric arrays), the same way for the official reference and for the kit's own runs.

Table formats:
- history: one row per (run, epoch) with the official log keys (``reference.official_logs()``, or
  a kit run's ``metrics.jsonl`` with a ``run`` column); epoch 0-based.
- layers: tidy rows (model, checkpoint, epoch, layer, metric, value), layer 0-based
  (``reference.official_entropy()``, ``dynamics.analyze``).

Every function takes an optional ``ax``, returns the Figure and never calls ``plt.show``.

Over 450 lines on purpose: one function per kind of figure, all sharing one style; split by
figure, the style would be scattered.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import matplotlib as mpl

# Agg only when nothing chose a backend (a script or CI); Jupyter's inline backend is left alone.
if "MPLBACKEND" not in os.environ and getattr(mpl.rcParams, "_get_backend_or_none", lambda: "set")() is None:
    mpl.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ddkit.runs.store import atomic_write  # noqa: E402
from ddkit.verdicts.stats import mean_ci as stats_mean_ci  # noqa: E402

# colours keyed by run name and by method name (Okabe-Ito, colour-blind safe)
METHOD_COLORS = {"SoftKD": "#333333", "SpectralKD": "#D55E00", "ProjectorKD": "#009E73",
                 "Teacher": "#000000", "Student": "#0072B2", "CE": "#999999"}
PALETTE = {
    "SoftKD": "#333333",
    "SpectralKD-First": "#56B4E9",
    "SpectralKD-Last": "#D55E00",
    "SpectralKD-First+Last": "#CC79A7",
    "ProjectorKD-First": "#009E73",
    "ProjectorKD-Last": "#E69F00",
    "ProjectorKD-First+Last": "#0072B2",
    **{k: v for k, v in METHOD_COLORS.items() if k != "SoftKD"},
}
SEQUENTIAL = "viridis"
SAVE_DPI = 150  # committed PNGs; notebooks show them at the screen's 100 dpi  # depth and training-time colour maps

LABELS = {
    "test_acc1": "top-1 accuracy (%)", "test_acc5": "top-5 accuracy (%)",
    "test_loss": "test loss (CE)", "train_loss": "train loss (total)",
    "train_loss_base": "train loss, CE part", "train_loss_dist": "train loss, KD part",
    "train_loss_fft": "train loss, feature part (w·L_feat)", "train_lr": "learning rate",
    "token_entropy": "token entropy (bits)", "token_entropy_per_layer": "token entropy, per-layer range (bits)",
    "spectrum_intensity": "channel-spectrum intensity", "activation_magnitude": "mean |activation|",
    "gradient_magnitude": "mean |gradient|", "intensity_over_magnitude": "intensity / mean |activation|",
    "effective_rank": "effective rank", "pca_dims": "PCs for 90 % energy",
    "pca_dims_95": "PCs for 95 % energy (interpolated)",
    "energy_concentration_50": "fraction of bins, 50 % energy",
    "energy_concentration_90": "fraction of bins, 90 % energy",
    "dlogamp_high": "spatial ΔLogAmp, highest frequency",
    "mean": "final top-1 (%), mean over seeds",
    "diff_vs_SoftKD": "top-1 minus SoftKD (pt), paired by seed",
}

_STYLE = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"),
          "figure.figsize": (6.0, 4.0), "figure.dpi": 100, "savefig.dpi": 150,
          "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
          "legend.fontsize": 9, "lines.linewidth": 1.6, "grid.linewidth": 0.6}


@contextmanager
def style(**extra):
    """The kit's style (plus ``extra`` rcParams) while a figure is drawn.

    Unlike ``plt.rc_context``, only the keys set here are restored on exit. The first figure of
    a Jupyter kernel loads the inline backend, which switches interactive mode on; a full
    rcParams restore (``rc_context``) would switch it off again on leaving the block, and every
    later figure would then be saved but never shown.
    """
    changes = {**_STYLE, **extra}
    before = {key: plt.rcParams[key] for key in changes}
    plt.rcParams.update(changes)
    try:
        yield
    finally:
        plt.rcParams.update(before)


def set_style() -> None:
    """Apply the kit's style globally (the plot functions also apply it while they draw)."""
    plt.rcParams.update(_STYLE)


def palette(names: Sequence[str]) -> dict[str, str]:
    """A colour per name: PALETTE by run name, else by base name (run without "-500ep"/"-MAE"),
    else by method; colours already taken in this figure fall through to the next free one."""
    free = sns.color_palette("colorblind").as_hex() + sns.color_palette("dark").as_hex()
    out: dict[str, str] = {}
    for name in names:
        key = str(name)
        base = key.removesuffix("-500ep").removesuffix("-MAE")
        for candidate in (PALETTE.get(key), PALETTE.get(base), METHOD_COLORS.get(key.split("-")[0])):
            if candidate and candidate not in out.values():
                out[name] = candidate
                break
        else:
            out[name] = next(c for c in free if c not in out.values())
    return out


def label(metric: str, layers: pd.DataFrame | None = None) -> str:
    """Axis label of a metric or log key (the key itself when unknown). With a layers table
    holding a ``prefix_tokens`` column, a magnitude's label says whether its rows kept the
    prefix tokens (the official averaging) or dropped them (``dynamics.analyze``)."""
    text = LABELS.get(metric, metric)
    if layers is None or "prefix_tokens" not in layers.columns or not metric.endswith("_magnitude"):
        return text
    kinds = sorted(layers.loc[layers["metric"] == metric, "prefix_tokens"].dropna().unique())
    words = {"keep": "prefix tokens kept", "drop": "prefix tokens dropped"}
    return f"{text}, {' / '.join(words.get(k, str(k)) for k in kinds)}" if kinds else text


def _axes(ax, figsize=None):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize or _STYLE["figure.figsize"], layout="constrained")
    return fig, ax


def _unique(values) -> list:
    return list(pd.unique(pd.Series(values)))


def _layer_ticks(ax, layers: Sequence[int], axis: str = "x", max_ticks: int = 13) -> None:
    layers = sorted(int(x) for x in layers)
    step = max(1, int(np.ceil(len(layers) / max_ticks)))
    shown = layers[::step]
    getattr(ax, f"set_{axis}ticks")(shown, [f"L{x + 1}" for x in shown])


def _depth_colorbar(fig, ax, cmap, n_layers: int, what: str = "layer") -> None:
    norm = mpl.colors.Normalize(0, max(n_layers - 1, 1))
    cbar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=what)
    ticks = sorted({0, n_layers - 1, *range(0, n_layers, max(1, n_layers // 6))})
    cbar.set_ticks(ticks, labels=[f"L{t + 1}" for t in ticks])


SEED_BAND = "bands: 95 % t interval over seeds"   # what every seed band in a figure is


def seed_interval(values, level: float = 95) -> tuple[float, float, float]:
    """(mean, low, high) over seeds: the mean and its ``level`` % t interval (``stats.mean_ci``,
    the interval the claims' tables print, so a figure and its table agree). One value: low =
    high = mean. Intervals over images are bootstraps, and are labelled so where drawn."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        m = float(v.mean()) if len(v) else np.nan
        return m, m, m
    e = stats_mean_ci(v, level=level / 100)
    return e.mean, e.lo, e.hi


def _mean_lines(ax, data: pd.DataFrame, x: str, y: str, hue: str, band: bool, **kw) -> None:
    """One line per hue value (mean over rows sharing (hue, x)); its 95 % t interval over the rows
    (seeds) as a band or as vertical bars where several rows share a point, said in a caption.
    Only the mean lines go to ``ax.lines``."""
    order = _unique(data[hue])
    colors = palette(order)
    drawn = False
    for h in order:
        stats = data[data[hue] == h].groupby(x, sort=True)[y].apply(
            lambda s: seed_interval(s.to_numpy()))
        xs = stats.index.to_numpy(float)
        m, lo, hi = (np.array([t[i] for t in stats]) for i in range(3))
        ax.plot(xs, m, color=colors[h], label=str(h), **kw)
        if (hi > lo).any():
            drawn = True
            if band:
                ax.fill_between(xs, lo, hi, color=colors[h], alpha=0.2, lw=0)
            else:
                ax.vlines(xs, lo, hi, color=colors[h], lw=1.2)
    if drawn:
        ax.text(0.99, 0.01, SEED_BAND.replace("bands", "bands" if band else "bars"),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=6, color="0.4")


# --------------------------------------------------------------------------- figures


def plot_curves(history: pd.DataFrame, y: str = "test_acc1", hue: str = "run", ax=None,
                epochs: tuple[int, int] | None = None, logy: bool = False, title: str | None = None) -> Figure:
    """Training curves: ``y`` vs epoch (0-based), one line per ``hue`` value; several rows per
    (hue, epoch), e.g. seeds, draw their mean with a 95 % t interval band over them. ``epochs=(a, b)`` keeps
    a <= epoch <= b (the early-epoch zoom)."""
    data = history
    if epochs is not None:
        data = data[(data["epoch"] >= epochs[0]) & (data["epoch"] <= epochs[1])]
    data = data.dropna(subset=[y])
    with style():
        fig, ax = _axes(ax)
        _mean_lines(ax, data, "epoch", y, hue, band=True)
        if logy:
            ax.set_yscale("log")
        ax.set(xlabel="epoch (0-based)", ylabel=label(y), title=title)
        if epochs is not None:
            ax.set_xlim(epochs)
        ax.legend(title=None)
    return fig


def plot_layer_profile(layers: pd.DataFrame, metric: str, hue: str = "model",
                       checkpoint: str | int | None = None, ax=None, title: str | None = None) -> Figure:
    """``metric`` vs layer (ticks L1..Ln), one line per ``hue`` value. ``checkpoint``: a checkpoint
    name (e.g. "model_best") or an epoch; required when the table holds several checkpoints.
    Several rows per (hue, layer), e.g. seeds, draw their mean with 95 % t interval bars."""
    data = layers[layers["metric"] == metric]
    if data.empty:
        raise ValueError(f"no rows with metric {metric!r}; metrics: {sorted(layers['metric'].unique())}")
    if isinstance(checkpoint, str):
        data = data[data["checkpoint"] == checkpoint]
    elif checkpoint is not None:
        data = data[data["epoch"] == checkpoint]
    elif data["checkpoint"].nunique() > 1:
        raise ValueError(f"several checkpoints in the table, pick one: {_unique(data['checkpoint'])}")
    if data.empty:
        raise ValueError(f"no {metric!r} rows at checkpoint {checkpoint!r}")
    with style():
        fig, ax = _axes(ax)
        _mean_lines(ax, data, "layer", "value", hue, band=False, marker="o", ms=4)
        _layer_ticks(ax, _unique(data["layer"]))
        ax.set(xlabel="layer", ylabel=label(metric, data), title=title)
        ax.legend(title=None)
    return fig


def plot_profile_over_checkpoints(layers: pd.DataFrame, metric: str, model: str, ax=None,
                                  checkpoints: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """How a profile forms over training: ``metric`` vs layer for ``model``, one line per
    checkpoint, coloured by its epoch (colorbar). ``checkpoints``: names to draw (default: all with
    a known epoch except "model_best", which repeats a late epoch). Rows sharing (checkpoint,
    layer), e.g. seeds, are averaged."""
    data = layers[(layers["metric"] == metric) & (layers["model"] == model)]
    if checkpoints is None:
        data = data[(data["checkpoint"] != "model_best") & data["epoch"].notna()]
    else:
        data = data[data["checkpoint"].isin(list(checkpoints))]
    if data.empty:
        raise ValueError(f"no {metric!r} rows for model {model!r}")
    mean = data.groupby(["epoch", "checkpoint", "layer"], sort=True)["value"].mean()
    epochs = data["epoch"].astype(float)
    norm = mpl.colors.Normalize(epochs.min(), max(epochs.max(), epochs.min() + 1))
    cmap = plt.get_cmap(SEQUENTIAL)
    with style():
        fig, ax = _axes(ax)
        for (epoch, checkpoint), line in mean.groupby(level=["epoch", "checkpoint"], sort=True):
            line = line.droplevel(["epoch", "checkpoint"])
            ax.plot(line.index, line.to_numpy(), marker="o", ms=3, color=cmap(norm(epoch)), label=checkpoint)
        fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="epoch (0-based)")
        _layer_ticks(ax, _unique(data["layer"]))
        ax.set(xlabel="layer", ylabel=label(metric, data), title=title or model)
    return fig


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def plot_spectra(spectrum, freqs=None, layers: Sequence[int] | None = None, ax=None,
                 title: str | None = None) -> Figure:
    """Channel spectra: ``spectrum`` [L, C] (mean |FFT along channels| / C), bins 0..C/2-1 against
    ``freqs`` (default ``fftfreq(C)[:C//2]``, cycles per channel), one line per layer (``layers``,
    0-based, default all) coloured by depth."""
    spec = _numpy(spectrum)  # [L, C]
    if spec.ndim != 2:
        raise ValueError(f"spectrum must be [L, C], got shape {spec.shape}")
    n_layers, c = spec.shape
    half = c // 2
    freqs = np.fft.fftfreq(c)[:half] if freqs is None else _numpy(freqs)[:half]
    if len(freqs) != half:
        raise ValueError(f"need {half} frequencies for C={c}, got {len(freqs)}")
    cmap = plt.get_cmap(SEQUENTIAL)
    with style():
        fig, ax = _axes(ax)
        for layer in range(n_layers) if layers is None else layers:
            ax.plot(freqs, spec[layer, :half], color=cmap(layer / max(n_layers - 1, 1)), label=f"L{layer + 1}")
        _depth_colorbar(fig, ax, cmap, n_layers)
        ax.set(xlabel="channel-axis frequency (cycles / channel)", ylabel="mean |X| (channel spectrum)",
               title=title)
    return fig


def plot_log_amplitude(dlogamp, ax=None, title: str | None = None) -> Figure:
    """Spatial ΔLogAmp [L, K] (log amplitude minus its DC value, natural log) vs spatial frequency,
    the K diagonal bins spread evenly over 0 (DC) .. π (highest bin); one line per layer coloured by
    depth."""
    amp = _numpy(dlogamp)  # [L, K]
    if amp.ndim != 2:
        raise ValueError(f"dlogamp must be [L, K], got shape {amp.shape}")
    n_layers, k = amp.shape
    x = np.linspace(0, np.pi, k)
    cmap = plt.get_cmap(SEQUENTIAL)
    with style():
        fig, ax = _axes(ax)
        for layer in range(n_layers):
            ax.plot(x, amp[layer], color=cmap(layer / max(n_layers - 1, 1)), label=f"L{layer + 1}")
        _depth_colorbar(fig, ax, cmap, n_layers)
        ax.set_xticks([0, np.pi / 2, np.pi], ["0", "π/2", "π"])
        ax.set(xlabel="spatial frequency (normalised, DC = 0)", ylabel="Δ log amplitude", title=title)
    return fig


def plot_matrix(matrix, row_label: str, col_label: str, ax=None, title: str | None = None,
                vmin: float = 0, vmax: float = 1, cbar_label: str = "linear CKA") -> Figure:
    """Heatmap of ``matrix`` [L_a, L_b] (e.g. CKA between layers of two models); L1 at the
    bottom-left, rows on the y axis."""
    mat = _numpy(matrix)  # [L_a, L_b]
    if mat.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {mat.shape}")
    with style(**{"axes.grid": False}):
        fig, ax = _axes(ax, figsize=(5.5, 4.5))
        im = ax.imshow(mat, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, label=cbar_label)
        _layer_ticks(ax, range(mat.shape[1]), "x")
        _layer_ticks(ax, range(mat.shape[0]), "y")
        ax.set(xlabel=col_label, ylabel=row_label, title=title)
    return fig


def plot_bars(table: pd.DataFrame, x: str, y: str, hue: str | None = None, err: str | None = None,
              ax=None, ref: float | None = None, ylim: tuple[float, float] | None = None,
              title: str | None = None) -> Figure:
    """Bars of ``y`` per ``x`` (grouped by ``hue``), with ``err`` as symmetric error bars (CI
    half-widths, same units as y) and an optional dashed horizontal reference line at ``ref``.
    One row per bar: aggregate (e.g. seeds) first."""
    xs = _unique(table[x])
    hues = _unique(table[hue]) if hue else [None]
    if table.duplicated([x, hue] if hue else [x]).any():
        raise ValueError("several rows per bar: aggregate the table first")
    colors = palette(hues if hue else xs)
    width = 0.8 / len(hues)
    with style():
        fig, ax = _axes(ax)
        for j, h in enumerate(hues):
            rows = table if h is None else table[table[hue] == h]
            rows = rows.set_index(x).reindex(xs)
            pos = np.arange(len(xs)) - 0.4 + width * (j + 0.5)
            ax.bar(pos, rows[y].to_numpy(float), width=width * 0.92,
                   yerr=None if err is None else rows[err].to_numpy(float),
                   color=[colors[v] for v in xs] if h is None else colors[h],
                   label=None if h is None else str(h), capsize=3, error_kw={"elinewidth": 1})
        if ref is not None:
            ax.axhline(ref, color="#555555", ls="--", lw=1)
        ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs], rotation=30 if len(xs) > 4 else 0,
                      ha="right" if len(xs) > 4 else "center")
        ax.set(xlabel=None, ylabel=label(y), title=title)
        if ylim is not None:
            ax.set_ylim(ylim)
        ax.grid(axis="x", visible=False)
        if hue:
            ax.legend(title=None)
    return fig


def save_figure(fig: Figure, name: str, out_dir: str | Path, pdf: bool = False) -> list[Path]:
    """Write ``out_dir/name.png`` (150 dpi) and, with ``pdf``, ``out_dir/name.pdf``, each
    atomically (a temporary name renamed into place); the PDF carries no creation date, so a
    redrawn figure with the same content is the same file. Returns the paths written."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    paths = []
    for fmt in ("png", "pdf") if pdf else ("png",):
        path = Path(out_dir) / f"{name}.{fmt}"
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        atomic_write(path, lambda tmp, fmt=fmt, metadata=metadata: fig.savefig(
            tmp, format=fmt, dpi=SAVE_DPI, bbox_inches="tight", metadata=metadata))
        paths.append(path)
    return paths


def plot_metric_panels(layers: pd.DataFrame, metrics: Sequence[str], hue: str = "model",
                       checkpoint: str | int | None = None, ncols: int = 3,
                       title: str | None = None) -> Figure:
    """Small multiples: one ``plot_layer_profile`` panel per metric, same hue lines in each."""
    nrows = -(-len(metrics) // ncols)
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            plot_layer_profile(layers, metric, hue=hue, checkpoint=checkpoint, ax=ax)
            ax.set_title(label(metric, layers), fontsize=10)
            ax.set_ylabel("")
            if ax is not axes.flat[0]:
                ax.get_legend().remove()
        for ax in axes.flat[len(metrics):]:
            ax.set_visible(False)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_samples(images, labels, class_names: Sequence[str] | None = None,
                 per_class: int = 8) -> Figure:
    """A grid of ``per_class`` images (rows) for every class (columns); images ``[N, C, H, W]``."""
    images, labels = _numpy(images), _numpy(labels).astype(int)
    classes = sorted(set(labels.tolist()))
    with style():
        fig, axes = plt.subplots(per_class, len(classes), squeeze=False,
                                 figsize=(0.9 * len(classes), 0.9 * per_class))
        for col, cls in enumerate(classes):
            picks = np.flatnonzero(labels == cls)[:per_class]
            for row, ax in enumerate(axes[:, col]):
                ax.axis("off")
                if row < len(picks):
                    img = images[picks[row]].transpose(1, 2, 0)      # [H, W, C]
                    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
            name = class_names[cls] if class_names else str(cls)
            axes[0, col].set_title(name, fontsize=8)
        fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def effect_percent(table: pd.DataFrame, column: str) -> pd.Series:
    """``column`` (an effect in the row's display units) as % of the row's SESOI: 100·x/δ, or
    100·ln x / ln δ for log-scale rows (ratios)."""
    log = table["scale"] == "log"
    with np.errstate(divide="ignore", invalid="ignore"):
        lin = 100 * table[column] / table["sesoi"]
        lg = 100 * np.log(table[column]) / np.log(table["sesoi"])
    return lg.where(log, lin)


def plot_effects(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Every claim's variants on one scale: the effect as % of the claim's smallest effect of
    interest (SESOI; ratios on the log scale), oriented so the paper's direction is positive. One
    panel per claim (titled with its headline verdict): the 90 % CI (thick), the 95 % CI (thin),
    the kit's estimate (dot; filled for primary variants), the paper's like-for-like value (x, only
    where the release has one), and a band from -100 % to +100 %: effects smaller than the SESOI.
    Rows: ``claims.TABLE_COLUMNS``."""
    claims = _unique(table["claim"])
    pct = {c: effect_percent(table, c) for c in ("estimate", "lo95", "hi95", "lo90", "hi90", "paper")}
    with style():
        counts = [int((table["claim"] == c).sum()) for c in claims]
        fig, axes = plt.subplots(len(claims), 1, squeeze=False,
                                 gridspec_kw={"height_ratios": [n + 1.5 for n in counts]},
                                 figsize=(8.0, 0.3 * len(table) + 0.75 * len(claims) + 0.8))
        for ax, claim in zip(axes[:, 0], claims):
            rows = table.index[table["claim"] == claim]
            pos = np.arange(len(rows))[::-1]
            ax.axvspan(-100, 100, color="#999999", alpha=0.15, lw=0,
                       label="|effect| < SESOI" if ax is axes[0, 0] else None)
            ax.axvline(0.0, color="#666666", lw=0.8)
            ax.hlines(pos, pct["lo95"][rows], pct["hi95"][rows], color="#0072B2", lw=1.0)
            ax.hlines(pos, pct["lo90"][rows], pct["hi90"][rows], color="#0072B2", lw=3.0)
            primary = table.loc[rows, "primary"].to_numpy(bool)
            ax.scatter(pct["estimate"][rows], pos, s=28, zorder=3, color="#0072B2",
                       facecolors=np.where(primary, "#0072B2", "white"), label="kit (95 %, 90 % CI)"
                       if ax is axes[0, 0] else None)
            ax.scatter(pct["paper"][rows], pos, marker="x", s=36, color="#D55E00", zorder=4,
                       label="paper (same quantity)" if ax is axes[0, 0] else None)
            labels = [f"{'★ ' if p else ''}{v} ({d})" for v, d, p in
                      zip(table.loc[rows, "variant"], table.loc[rows, "verdict"], primary)]
            ax.set_yticks(pos, labels, fontsize=7)
            ax.set_title(f"{claim}: {table.loc[rows[0], 'headline']}", fontsize=9, loc="left")
        axes[-1, 0].set_xlabel("effect as % of the claim's SESOI (paper's direction > 0); each "
                               "row's interval is its own kind: t over seeds, bootstrap over "
                               "images (teacher rows), Bonferroni max-min (C1)", fontsize=7)
        fig.legend(loc="upper right", ncol=3, fontsize=7, frameon=False)
        if title:
            fig.suptitle(title, x=0.02, ha="left")
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))
    return fig


def plot_feature_fit(fit: pd.DataFrame, value: str, logy: bool = False,
                     title: str | None = None) -> Figure:
    """How well students fit the teacher's blocks over training: one panel per (s, t) pair, one
    line per run (mean over seeds, 95 % band); ``value``: raw | relative | cosine."""
    pairs = sorted(_unique(fit["pair"]), key=lambda p: int(p.split("-")[0][1:]))
    with style():
        fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 3.8), squeeze=False,
                                 sharey=True)
        for ax, pair in zip(axes[0], pairs):
            _mean_lines(ax, fit[fit["pair"] == pair], "epoch", value, "run", band=True)
            ax.set(xlabel="epoch (0-based)", title=f"pair {pair}")
            if logy:
                ax.set_yscale("log")
        axes[0, 0].set_ylabel({"raw": "SpectralKD loss (raw)",
                               "relative": "loss / all-zero-prediction loss",
                               "cosine": "token cosine (student, pooled teacher)"}.get(value, value))
        axes[0, -1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_u_formation(kit: pd.DataFrame, official: pd.DataFrame | None = None,
                     statistics: Sequence[str] = ("U depth", "first − min", "last − min"),
                     unit: str = "bits", title: str | None = None) -> Figure:
    """The U's depth and arms over training (``formation.depths`` rows with ``progress``): one
    panel per statistic, one line per kit model with its 95 % band over seeds, the official
    release's students dashed in the same colour where the names match; 0 (no U) drawn grey."""
    models = _unique(kit["model"]) + ([m for m in _unique(official["model"])
                                       if m not in set(kit["model"])] if official is not None else [])
    colors = palette(models)
    with style():
        fig, axes = plt.subplots(1, len(statistics), figsize=(4.2 * len(statistics), 3.6),
                                 layout="constrained", squeeze=False)
        for ax, statistic in zip(axes[0], statistics):
            ax.axhline(0, color="0.6", lw=0.8)
            rows = kit[kit["statistic"] == statistic].sort_values("progress")
            for model, g in rows.groupby("model", sort=False):
                ax.plot(g["progress"], g["estimate"], color=colors[model], label=f"kit {model}")
                if g["lo95"].notna().any():
                    ax.fill_between(g["progress"], g["lo95"], g["hi95"], color=colors[model],
                                    alpha=0.2, lw=0)
            if official is not None:
                rows = official[official["statistic"] == statistic].sort_values("progress")
                for model, g in rows.groupby("model", sort=False):
                    if model in set(kit["model"]):
                        ax.plot(g["progress"], g["estimate"], color=colors[model], ls="--",
                                label=f"official {model}")
            ax.set(xlabel="fraction of the schedule done", ylabel=f"{statistic} ({unit})",
                   title=statistic, xlim=(0, 1.02))
        axes[0][0].legend(title="bands: 95 % interval over seeds", title_fontsize=7, fontsize=8)
        if title:
            fig.suptitle(title)
    return fig
