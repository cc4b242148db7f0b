"""Verdicts for the paper's claims C1–C6 (docs/design.md §1), computed from the numbers given.

Each rule takes plain arrays (shapes in its docstring) and returns a :class:`Verdict`:
``reproduced``, ``not reproduced`` or ``inconclusive``, with the statistic behind it (a string that
names the numbers), the decisive :class:`~ddkit.stats.Estimate` and a one-line statement of the
test. Nothing is typed in: change the numbers and the verdict follows.

Conventions
-----------
* Intervals are two-sided at ``level`` (default 0.95). Over seeds they are Student-t intervals of
  paired differences (seed i of one arm is paired with seed i of the other: same data order and
  initialisation). Per-image values are paired by image the same way.
* Rows that are bootstrap replicates (``replicates=True`` where offered) already carry the
  sampling spread: their percentile interval is used instead of a t interval.
* "CI > t" means lo > t (strict); the opposite side is inclusive (hi <= t counts against a
  claimed increase), so a difference that is exactly zero in every seed refutes a claimed
  direction rather than hiding as "inconclusive".
* An undefined interval (one seed) is always ``inconclusive``.
* A claim made of several parts (a conjunction) is reproduced only if every part is, not
  reproduced if any part is, and inconclusive otherwise. Its ``estimate`` is the binding part
  (the one closest to failing); the statistic string names every part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from .stats import Estimate, paired_difference, ratio_estimate, replicate_interval

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

TABLE_COLUMNS = ("claim", "variant", "verdict", "statistic", "mean", "lo", "hi", "n", "rule")
DIGITS = 3  # decimals in statistic strings

Direction = Literal["less", "greater"]


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict under one metric variant, with the statistic and the test behind it."""

    claim: str
    variant: str
    verdict: str
    statistic: str
    estimate: Estimate | None
    rule: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def as_row(self) -> dict:
        """A flat dict for a table: the columns of ``TABLE_COLUMNS``."""
        e = self.estimate
        nan = float("nan")
        return {"claim": self.claim, "variant": self.variant, "verdict": self.verdict,
                "statistic": self.statistic,
                "mean": e.mean if e else nan, "lo": e.lo if e else nan, "hi": e.hi if e else nan,
                "n": e.n if e else 0, "rule": self.rule}


def claims_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per verdict, columns in ``TABLE_COLUMNS`` order (also for an empty list)."""
    rows = [v.as_row() for v in verdicts]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


# ----------------------------------------------------------------------------- generic tests

def directional(estimate: Estimate, direction: Direction, threshold: float = 0.0) -> str:
    """Verdict for "the quantity is ``direction`` than ``threshold``".

    greater: reproduced if lo > threshold, not reproduced if hi <= threshold.
    less:    reproduced if hi < threshold, not reproduced if lo >= threshold.
    Otherwise (the CI straddles the threshold) or with an undefined CI: inconclusive.
    """
    if direction not in ("less", "greater"):
        raise ValueError(f"direction must be 'less' or 'greater', got {direction!r}")
    if not estimate.defined:
        return INCONCLUSIVE
    if direction == "greater":
        if estimate.lo > threshold:
            return REPRODUCED
        return NOT_REPRODUCED if estimate.hi <= threshold else INCONCLUSIVE
    if estimate.hi < threshold:
        return REPRODUCED
    return NOT_REPRODUCED if estimate.lo >= threshold else INCONCLUSIVE


def conjunction(parts: Sequence[str]) -> str:
    """All parts reproduced → reproduced; any part not reproduced → not reproduced; else inconclusive."""
    if any(p == NOT_REPRODUCED for p in parts):
        return NOT_REPRODUCED
    if parts and all(p == REPRODUCED for p in parts):
        return REPRODUCED
    return INCONCLUSIVE


def _fmt(e: Estimate, unit: str = "") -> str:
    return e.format(unit=unit, digits=DIGITS)


def _diff(a, b, level: float, names: tuple[str, str], replicates: bool) -> Estimate:
    """Paired a - b: t interval over pairs, or percentile interval when rows are replicates."""
    if not replicates:
        return paired_difference(a, b, level, names=names)
    d = paired_difference(a, b, level, names=names)  # validates; mean of a - b
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return replicate_interval(x, level, name=f"{names[0]} - {names[1]}", point=d.mean)


def _matrix(values, name: str, min_layers: int) -> np.ndarray:
    """A finite [S, L] array with S >= 1 and L >= ``min_layers``; else ValueError naming ``name``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected [S, L] (rows = seeds or replicates), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < min_layers:
        raise ValueError(f"{name}: need at least 1 row and {min_layers} layers, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains non-finite values (NaN/inf)")
    return arr


def _level_word(level: float) -> str:
    return f"{level:.0%} CI"


# ----------------------------------------------------------------------------- C1: U-shaped entropy

def c1_u_shape(profiles, variant: str = "raw", *, level: float = 0.95, min_depth: float = 0.0,
               replicates: bool = False) -> Verdict:
    """C1 — the per-layer entropy profile is U-shaped (compress early/middle, expand late).

    ``profiles``: [S, L] entropy per layer (L >= 3), one row per seed (or per bootstrap replicate
    with ``replicates=True``). l* = argmin over layers of the mean profile. d_first, d_last =
    paired differences (first layer − layer l*) and (last layer − layer l*) over rows.

    * l* interior (0 < l* < L-1): both ends must exceed the minimum by more than ``min_depth``:
      reproduced if both CIs lie above ``min_depth``; not reproduced if either CI lies at or below
      it (that side is flat within ``min_depth``: an L-shape, not a U); else inconclusive. Because
      l* minimises the mean profile, both differences have mean >= 0 by construction — an end
      cannot be significantly *below* the minimum — so with the default ``min_depth=0`` this path
      refutes only in the degenerate case of an end tied with the minimum in every row; give a
      positive ``min_depth`` (in the profile's unit) to test "this side is flat" for real.
    * l* at an end: no interior compression on average. Not reproduced if the other end lies
      clearly above l* (its CI > 0: a monotone trend, as docs/design.md §7 saw) or is flat with it (its
      CI at or below ``min_depth``; only reachable with ``min_depth > 0`` or exact ties); else
      inconclusive (noise could hide a shallow U).

    Estimate: interior → the shallower side (smaller lower bound); end → the other end's difference.
    """
    P = _matrix(profiles, "profiles", 3)
    S, L = P.shape
    lstar = int(np.argmin(P.mean(axis=0)))
    names_f = ("first layer", f"layer {lstar + 1}")
    names_l = ("last layer", f"layer {lstar + 1}")
    d_first = _diff(P[:, 0], P[:, lstar], level, names_f, replicates)
    d_last = _diff(P[:, L - 1], P[:, lstar], level, names_l, replicates)
    stat = (f"min at L{lstar + 1}/{L}; first−min {_fmt(d_first)}; last−min {_fmt(d_last)}")
    ci = "percentile interval over replicates" if replicates else f"paired t {_level_word(level)} over seeds"
    if 0 < lstar < L - 1:
        verdict = conjunction([directional(d_first, "greater", min_depth),
                               directional(d_last, "greater", min_depth)])
        est = min((d_first, d_last), key=lambda e: (e.lo if e.defined else -np.inf, e.mean))
    else:
        other = d_last if lstar == 0 else d_first
        if not other.defined:
            verdict = INCONCLUSIVE
        elif other.lo > 0 or other.hi <= min_depth:
            verdict = NOT_REPRODUCED
        else:
            verdict = INCONCLUSIVE
        est = other
    rule = (f"l* = argmin of mean profile; reproduced if l* interior and first−min, last−min both "
            f"> {min_depth:g} ({ci}); not reproduced if l* is an end and the other end is clearly "
            f"above it (monotone), or a side's CI <= {min_depth:g} (flat)")
    return Verdict("C1", variant, verdict, stat, est, rule)


# ----------------------------------------------------------------------------- C2: distributed code

def c2_distributed_code(teacher_first, teacher_last, variant: str = "intensity", *,
                        level: float = 0.95, replicates: bool = False) -> Verdict:
    """C2 — the teacher's late layers use a broader / higher-dimensional code than its first.

    ``teacher_first``, ``teacher_last``: [N] values of a capacity or spectrum metric (spectrum
    intensity, intensity ÷ magnitude, effective rank, ...) at the teacher's first and last block,
    paired by image (or by bootstrap replicate with ``replicates=True``). Reproduced if the paired
    last − first CI > 0, not reproduced if it is <= 0, else inconclusive. Use a scale-controlled
    ``variant`` beside the raw one (docs/design.md §7: raw intensity mostly tracks magnitude).
    """
    d = _diff(teacher_last, teacher_first, level, ("teacher_last", "teacher_first"), replicates)
    verdict = directional(d, "greater")
    unit = "replicates" if replicates else "images"
    return Verdict("C2", variant, verdict, f"teacher last−first {_fmt(d)}", d,
                   f"paired last−first over {unit}: reproduced if {_level_word(level)} > 0, "
                   f"not reproduced if <= 0")


def c2_capacity_gap(teacher_last, student_last, variant: str = "effective_rank", *,
                    level: float = 0.95, replicates: bool = False) -> Verdict:
    """C2 (capacity) — the small student lacks the channel capacity of the teacher's last layer.

    ``teacher_last``, ``student_last``: [N] values of a capacity metric (e.g. effective rank) at
    the last block of teacher and student, paired by image (or replicate). Reproduced if teacher −
    student CI > 0, not reproduced if <= 0, else inconclusive. The metric is compared as given:
    normalise by width beforehand if that is the question.
    """
    d = _diff(teacher_last, student_last, level, ("teacher_last", "student_last"), replicates)
    verdict = directional(d, "greater")
    return Verdict("C2-capacity", variant, verdict, f"teacher−student at last layer {_fmt(d)}", d,
                   f"paired teacher−student at the last layer: reproduced if {_level_word(level)} > 0, "
                   f"not reproduced if <= 0")


# ----------------------------------------------------------------------------- C3: negative transfer

def c3_negative_transfer(acc_last, acc_soft, variant: str = "top1", *,
                         level: float = 0.95) -> Verdict:
    """C3 — late-layer feature alignment (Last) is worse than logit KD alone (SoftKD).

    ``acc_last``, ``acc_soft``: [S] top-1 accuracy (percent) per seed, paired by seed. Reproduced if
    the paired Last − SoftKD CI < 0, not reproduced if it is >= 0, else inconclusive.
    """
    d = paired_difference(acc_last, acc_soft, level, names=("acc_last", "acc_soft"))
    verdict = directional(d, "less")
    return Verdict("C3", variant, verdict, f"Last−SoftKD {_fmt(d, 'pt')}", d,
                   f"paired Last−SoftKD over seeds: reproduced if {_level_word(level)} < 0, "
                   f"not reproduced if >= 0")


def c3_early_neutral(acc_first, acc_soft, margin: float = 0.5, variant: str = "top1", *,
                     level: float = 0.95) -> Verdict:
    """C3 (early) — early-layer alignment (First) is neutral relative to SoftKD.

    ``acc_first``, ``acc_soft``: [S] top-1 accuracy (percent) per seed, paired. With d = First −
    SoftKD: reproduced ("neutral") if the CI contains 0 and lies within ±``margin`` points; not
    reproduced if the CI excludes 0 (a detectable effect, however small; its size is in the
    statistic); inconclusive if it contains 0 but is wider than the margin (too few seeds), or
    is undefined.
    """
    if not margin > 0:
        raise ValueError(f"margin must be > 0 (points), got {margin!r}")
    d = paired_difference(acc_first, acc_soft, level, names=("acc_first", "acc_soft"))
    if not d.defined:
        verdict = INCONCLUSIVE
    elif not d.contains(0.0):
        verdict = NOT_REPRODUCED
    elif -margin <= d.lo and d.hi <= margin:
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return Verdict("C3-early", variant, verdict, f"First−SoftKD {_fmt(d, 'pt')}; margin ±{margin:g} pt",
                   d, f"paired First−SoftKD over seeds: reproduced if {_level_word(level)} contains 0 "
                      f"within ±{margin:g} pt, not reproduced if it excludes 0")


# ----------------------------------------------------------------------------- C4: last pair not fitted

def c4_last_harder(loss_last, loss_first, factor: float = 2.0, variant: str = "raw", *,
                   level: float = 0.95) -> Verdict:
    """C4 — the student fits the teacher's last layer far worse than its first.

    ``loss_last``, ``loss_first``: [S] end-of-training feature loss per seed (> 0) for the last and
    first layer pairs, paired by seed. ``variant`` "raw" for the loss itself, "relative_to_zero"
    for loss ÷ the loss of an all-zero prediction (docs/design.md §7: raw losses mostly track scale).
    R = geometric-mean ratio last/first: reproduced if its lower bound > ``factor``; not reproduced
    if its upper bound < 1 (the last pair is fitted better); else inconclusive.
    """
    if not factor >= 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    r = ratio_estimate(loss_last, loss_first, level, names=("loss_last", "loss_first"))
    if not r.defined:
        verdict = INCONCLUSIVE
    elif r.lo > factor:
        verdict = REPRODUCED
    elif r.hi < 1.0:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return Verdict("C4", variant, verdict, f"last/first loss ratio {r.format(unit='×', digits=DIGITS)}",
                   r, f"geometric-mean ratio last/first over seeds (t {_level_word(level)} on log): "
                      f"reproduced if lo > {factor:g}, not reproduced if hi < 1")


def c4_last_harder_cosine(cos_last, cos_first, variant: str = "cosine", *,
                          level: float = 0.95) -> Verdict:
    """C4 (cosine) — the last pair is aligned worse than the first.

    ``cos_last``, ``cos_first``: [S] end-of-training mean cosine similarity between student and
    teacher features for the last and first pairs, paired by seed. Reproduced if last − first CI
    < 0, not reproduced if >= 0, else inconclusive.
    """
    d = paired_difference(cos_last, cos_first, level, names=("cos_last", "cos_first"))
    verdict = directional(d, "less")
    return Verdict("C4", variant, verdict, f"cosine last−first {_fmt(d)}", d,
                   f"paired cosine last−first over seeds: reproduced if {_level_word(level)} < 0, "
                   f"not reproduced if >= 0")


# ----------------------------------------------------------------------------- C5: early speed-up

def c5_early_speedup(acc_feat_early, acc_soft_early, acc_feat_final, acc_soft_final,
                     variant: str = "top1", *, level: float = 0.95) -> Verdict:
    """C5 — feature alignment speeds up early training, but SoftKD catches up.

    All four: [S] top-1 (percent) per seed, paired by seed; "early" at a fixed early epoch, "final"
    at the end. early = feat − soft early, final = feat − soft final.

    * reproduced: early CI > 0, AND final mean < early mean, AND final CI lo <= 0 (contains 0 or
      lies below: the gap has closed or reversed);
    * not reproduced: early CI <= 0 (no speed-up), or final CI > 0 with final mean >= early mean
      (feature KD stays ahead by as much or more: SoftKD never catches up);
    * inconclusive: otherwise (e.g. the gap narrows but is still significantly open).

    Estimate: the early difference.
    """
    names_e = ("acc_feat_early", "acc_soft_early")
    names_f = ("acc_feat_final", "acc_soft_final")
    early = paired_difference(acc_feat_early, acc_soft_early, level, names=names_e)
    final = paired_difference(acc_feat_final, acc_soft_final, level, names=names_f)
    if not (early.defined and final.defined):
        verdict = INCONCLUSIVE
    elif early.hi <= 0:
        verdict = NOT_REPRODUCED
    elif final.lo > 0 and final.mean >= early.mean:
        verdict = NOT_REPRODUCED
    elif early.lo > 0 and final.mean < early.mean and final.lo <= 0:
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    stat = f"early feat−SoftKD {_fmt(early, 'pt')}; final feat−SoftKD {_fmt(final, 'pt')}"
    rule = (f"paired feat−SoftKD over seeds ({_level_word(level)}): reproduced if early > 0 and final "
            f"mean < early mean with final lo <= 0; not reproduced if early <= 0 or final > 0 "
            f"without narrowing")
    return Verdict("C5", variant, verdict, stat, early, rule)


# ----------------------------------------------------------------------------- C6: distorted profile

def c6_profile_distortion(profile_last, profile_soft, variant: str = "raw", *,
                          level: float = 0.95, replicates: bool = False) -> Verdict:
    """C6 — late-layer alignment deepens the middle bottleneck and pins the last layer low.

    ``profile_last``, ``profile_soft``: [S, L] entropy per layer (L >= 3) for Last-aligned and
    SoftKD students, rows paired by seed (or replicate). Per row: middle minimum = min over layers
    1 .. L-2 (0-based), and the last layer's value. Two paired differences Last − SoftKD:
    d_mid and d_end. Reproduced if both CIs < 0; not reproduced if either CI >= 0 (that part is
    refuted); else inconclusive. Estimate: the binding part (larger upper bound).
    """
    A = _matrix(profile_last, "profile_last", 3)
    B = _matrix(profile_soft, "profile_soft", 3)
    if A.shape != B.shape:
        raise ValueError(f"profile_last {A.shape} and profile_soft {B.shape} must have the same [S, L]")
    d_mid = _diff(A[:, 1:-1].min(axis=1), B[:, 1:-1].min(axis=1), level,
                  ("profile_last middle min", "profile_soft middle min"), replicates)
    d_end = _diff(A[:, -1], B[:, -1], level, ("profile_last last layer", "profile_soft last layer"),
                  replicates)
    verdict = conjunction([directional(d_mid, "less"), directional(d_end, "less")])
    est = max((d_mid, d_end), key=lambda e: (e.hi if e.defined else np.inf, e.mean))
    stat = f"middle-min Last−SoftKD {_fmt(d_mid)}; last-layer Last−SoftKD {_fmt(d_end)}"
    rule = (f"paired Last−SoftKD of the middle-layer minimum and of the last layer "
            f"({_level_word(level)}): reproduced if both < 0, not reproduced if either >= 0")
    return Verdict("C6", variant, verdict, stat, est, rule)


__all__ = ["REPRODUCED", "NOT_REPRODUCED", "INCONCLUSIVE", "VERDICTS", "TABLE_COLUMNS", "Verdict",
           "claims_table", "directional", "conjunction", "c1_u_shape", "c2_distributed_code",
           "c2_capacity_gap", "c3_negative_transfer", "c3_early_neutral", "c4_last_harder",
           "c4_last_harder_cosine", "c5_early_speedup", "c6_profile_distortion"]
