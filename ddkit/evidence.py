"""The evidence for each claim, gathered from a study's own tables, judged by ``ddkit.claims``.

Inputs are the tidy tables the notebooks already build (``ddkit.study``):

    finals   per-layer metrics of every student's final weights: rows (model=cell, seed, layer,
             metric, value)
    reps     bootstrap replicates over the analysis images of the teacher's and one student's
             per-layer metrics: rows (model, replicate, layer, metric, value)
    fit      feature fit per kept checkpoint: rows (run, seed, epoch, pair, raw, zero, relative,
             cosine), pairs ``s0-t0`` (First) and ``s{-1}-t{-1}`` (Last)
    history  per-epoch logs of every student: rows (run, seed, epoch, test_acc1, ...)

Every claim is tested on the paper's raw metric and on its scale-controlled versions
(docs/design.md §7); a claim that holds only on the raw metric shows as such in the table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ddkit import claims
from ddkit.dynamics import layer_metrics, record

def _acc(run: str) -> str:
    return f"best test_acc1 {run} (%)"


# (claim, variant prefix) -> the paper's effect from reference.paper_numbers(): (a, b, op)
PAPER_EFFECTS = {
    ("C1", "raw, SoftKD"): ("SoftKD entropy U depth, L1 - min (bits)", None, "-"),
    ("C3", "top1, SpectralKD"): (_acc("SpectralKD-Last"), _acc("SoftKD"), "-"),
    ("C3", "top1, ProjectorKD"): (_acc("ProjectorKD-Last"), _acc("SoftKD"), "-"),
    ("C3-early", "top1, SpectralKD"): (_acc("SpectralKD-First"), _acc("SoftKD"), "-"),
    ("C3-early", "top1, ProjectorKD"): (_acc("ProjectorKD-First"), _acc("SoftKD"), "-"),
    ("C4", "raw"): ("final raw SpectralKD loss SpectralKD-Last",
                    "final raw SpectralKD loss SpectralKD-First", "/"),
    ("C5", "top1"): ("test_acc1 at epoch 9 SpectralKD-Last (%)", "test_acc1 at epoch 9 SoftKD (%)", "-"),
    ("C6", "raw"): ("SpectralKD-Last - SoftKD entropy L12 (bits)", None, "-"),
}


# --------------------------------------------------------------------------- inputs


def bootstrap_layer_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, name: str,
                            n_boot: int = 30, seed: int = 0) -> pd.DataFrame:
    """Per-layer metrics on ``n_boot`` resamples (with replacement) of the analysis images.

    Resample r uses the same image indices for every model given the same ``seed``, so two
    models' replicates are paired by resample. Rows (model, replicate, layer, metric, value).
    """
    feats, grads = record(model, x, y)                             # [L, B, C, H, W]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for r in range(n_boot):
        idx = torch.randint(0, feats.shape[1], (feats.shape[1],), generator=generator)
        values = layer_metrics(feats[:, idx], grads[:, idx])
        rows += [{"model": name, "replicate": r, "layer": layer, "metric": metric, "value": float(v)}
                 for metric, per_layer in values.items() for layer, v in enumerate(per_layer.tolist())]
    return pd.DataFrame(rows)


def _profiles(table: pd.DataFrame, model: str, metric: str, by: str) -> np.ndarray:
    """``[S, L]`` rows of one model's per-layer ``metric``, one row per ``by`` (seed/replicate)."""
    rows = table[(table["model"] == model) & (table["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no {metric!r} rows for model {model!r}")
    return rows.pivot_table(index=by, columns="layer", values="value").to_numpy()


def _by_seed(table: pd.DataFrame, run: str, value: str, **where) -> np.ndarray:
    rows = table[table["run"] == run]
    for column, wanted in where.items():
        rows = rows[rows[column] == wanted]
    return rows.sort_values("seed")[value].to_numpy()


# --------------------------------------------------------------------------- per claim


def c1(finals: pd.DataFrame, reps: pd.DataFrame | None = None,
       teacher: str = "teacher") -> list[claims.Verdict]:
    """U-shaped entropy: the SoftKD students over seeds, and (given ``reps``) the teacher over
    image resamples."""
    out = []
    for metric, variant in (("token_entropy", "raw"), ("token_entropy_per_layer", "per_layer_range")):
        out.append(claims.c1_u_shape(_profiles(finals, "SoftKD", metric, "seed"),
                                     f"{variant}, SoftKD students"))
        if reps is not None:
            out.append(claims.c1_u_shape(_profiles(reps, teacher, metric, "replicate"),
                                         f"{variant}, teacher", replicates=True))
    return out


def c2(reps: pd.DataFrame, teacher: str = "teacher", student: str = "SoftKD") -> list[claims.Verdict]:
    """Teacher late layers: broader/higher than early (raw and scale-controlled), and more than
    the student's last layer can hold."""
    out = []
    for metric, variant in (("spectrum_intensity", "intensity"),
                            ("intensity_over_magnitude", "intensity_over_magnitude"),
                            ("effective_rank", "effective_rank")):
        p = _profiles(reps, teacher, metric, "replicate")
        out.append(claims.c2_distributed_code(p[:, 0], p[:, -1], variant, replicates=True))
    for metric in ("effective_rank", "pca_dims"):
        t = _profiles(reps, teacher, metric, "replicate")[:, -1]
        s = _profiles(reps, student, metric, "replicate")[:, -1]
        out.append(claims.c2_capacity_gap(t, s, metric, replicates=True))
    return out


def c3(history: pd.DataFrame, methods: tuple[str, ...] = ("SpectralKD", "ProjectorKD"),
       early_layers: bool = True) -> list[claims.Verdict]:
    """Late alignment below SoftKD (final top-1, paired by seed); with ``early_layers``, early
    alignment neutral too."""
    final = history[history["epoch"] == history["epoch"].max()]
    soft = _by_seed(final, "SoftKD", "test_acc1")
    out = []
    for method in methods:
        last = _by_seed(final, f"{method}-Last", "test_acc1")
        out.append(claims.c3_negative_transfer(last, soft, f"top1, {method}"))
        if early_layers:
            first = _by_seed(final, f"{method}-First", "test_acc1")
            out.append(claims.c3_early_neutral(first, soft, variant=f"top1, {method}"))
    return out


def c4(fit: pd.DataFrame, run: str = "SpectralKD-First+Last", factor: float = 2.0) -> list[claims.Verdict]:
    """The last pair fitted worse than the first at the end of training, in the run that aligns
    both: raw loss ratio, ratio of loss relative to an all-zero prediction, and cosine."""
    end = fit[fit["epoch"] == fit["epoch"].max()]
    pairs = sorted(end["pair"].unique(), key=lambda p: int(p.split("-")[0][1:]))
    first, last = pairs[0], pairs[-1]
    get = lambda pair, value: _by_seed(end, run, value, pair=pair)   # noqa: E731
    return [claims.c4_last_harder(get(last, "raw"), get(first, "raw"), factor, "raw"),
            claims.c4_last_harder(get(last, "relative"), get(first, "relative"), factor,
                                  "relative_to_zero"),
            claims.c4_last_harder_cosine(get(last, "cosine"), get(first, "cosine"))]


def c5(history: pd.DataFrame, early_epoch: int) -> list[claims.Verdict]:
    """Feature alignment ahead at an early epoch, the gap closed by the end."""
    final_epoch = history["epoch"].max()
    at = lambda run, epoch: _by_seed(history, run, "test_acc1", epoch=epoch)   # noqa: E731
    out = []
    for run in ("SpectralKD-Last", "SpectralKD-First+Last"):
        out.append(claims.c5_early_speedup(at(run, early_epoch), at("SoftKD", early_epoch),
                                           at(run, final_epoch), at("SoftKD", final_epoch),
                                           variant=f"top1 at epoch {early_epoch}, {run}"))
    return out


def c6(finals: pd.DataFrame) -> list[claims.Verdict]:
    """Last alignment distorts the student's entropy profile (deeper middle, lower last layer)."""
    return [claims.c6_profile_distortion(_profiles(finals, "SpectralKD-Last", metric, "seed"),
                                         _profiles(finals, "SoftKD", metric, "seed"), variant)
            for metric, variant in (("token_entropy", "raw"),
                                    ("token_entropy_per_layer", "per_layer_range"))]


def all_verdicts(finals, reps, fit, history, early_epoch: int) -> list[claims.Verdict]:
    return [*c1(finals, reps), *c2(reps), *c3(history), *c4(fit), *c5(history, early_epoch),
            *c6(finals)]


# --------------------------------------------------------------------------- the table


def paper_effect(claim: str, variant: str, numbers: pd.DataFrame) -> float:
    """The paper's effect for a (claim, variant) row, computed from ``paper_numbers()``; NaN
    where the paper gives none (scale-controlled variants, the teacher, C2's figures)."""
    value = numbers.set_index("quantity")["value"]
    for (c, prefix), (a, b, op) in PAPER_EFFECTS.items():
        if c == claim and variant.startswith(prefix) and not variant.endswith("First+Last"):
            return value[a] / value[b] if op == "/" else value[a] - (value[b] if b else 0.0)
    return float("nan")


def claims_table(verdicts: list[claims.Verdict], numbers: pd.DataFrame,
                 column: str = "kit") -> pd.DataFrame:
    """One row per (claim, variant): paper effect, the kit's estimate and CI, verdict."""
    table = claims.claims_table(verdicts)
    table.insert(2, "paper", [paper_effect(c, v, numbers)
                              for c, v in zip(table["claim"], table["variant"])])
    return table.rename(columns={"mean": column, "lo": f"{column}_lo", "hi": f"{column}_hi"})


def results_markdown(table: pd.DataFrame, profile: str, column: str = "kit") -> str:
    """The README's results section, generated from the claims table."""
    lines = [f"Profile `{profile}`; generated by `notebooks/05_claims.ipynb` from "
             f"`figures/claims_table.csv`.", "",
             "| claim | variant | paper | kit (95 % CI) | verdict |", "|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        paper = "" if pd.isna(row.paper) else f"{row.paper:.3g}"
        kit = getattr(row, column)
        lo, hi = getattr(row, f"{column}_lo"), getattr(row, f"{column}_hi")
        ci = "" if pd.isna(lo) else f" [{lo:.3g}, {hi:.3g}]"
        lines.append(f"| {row.claim} | {row.variant} | {paper} | {kit:.3g}{ci} | {row.verdict} |")
    return "\n".join(lines) + "\n"
