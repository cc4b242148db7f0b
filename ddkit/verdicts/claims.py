"""Verdicts for the paper's claims C1–C6 (docs/design.md §1), by the rules of docs/design.md §8.

A claim is tested on one or more *variants* (a metric, a cell, a subject). Each variant is an
:class:`Evidence`: an effect estimate with its sampling distribution (``ddkit.verdicts.stats``: a t
distribution over seeds, bootstrap replicates over images, or a max-min over layers), oriented so
that the paper's direction is positive, and the claim's smallest effect of interest (SESOI, δ > 0,
pre-set in ``ddkit.verdicts.evidence`` from the paper's own numbers). Three one-sided tests per variant:

    support    directional: H0 e <= 0 (α = 0.025: the 95 % interval above 0)
               equivalence: H0 |e| >= δ, two one-sided tests (α = 0.05 each: 90 % interval in ±δ)
               non-inferiority: H0 e >= δ (α = 0.05: the 90 % interval below δ)
    opposite   directional: H0 e >= 0 (α = 0.025: the 95 % interval below 0)
               equivalence / non-inferiority: H0 e within the margin, i.e. the 95 % interval
               entirely beyond ±δ (beyond δ), α = 0.025 on that side
    sesoi      directional only: H0 e >= δ (α = 0.05: the 90 % interval below δ)

Within a claim, each test's p-values are Holm-adjusted over the variants of the same kind; the
verdict of a variant comes from its adjusted p-values:

    directional      opposite | reproduced (support, not sesoi) | smaller than the paper's
                     (support and sesoi) | absent (sesoi only) | inconclusive
    equivalence      reproduced (neutral) | opposite (not neutral) | inconclusive
    non-inferiority  reproduced | opposite | inconclusive

A claim's headline is its primary variant's verdict; a claim made of several parts (C5, C6) has
several primary rows, combined by :func:`combine`. Any ``opposite`` among the other variants is
reported beside the headline (``also_opposite``). Nothing is typed in: change the numbers and
the verdict follows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .stats import Dist, MaxMin, Replicates, SlopeDist, TDist, holm

REPRODUCED = "reproduced"
SMALLER = "smaller than the paper's"
ABSENT = "absent"
OPPOSITE = "opposite"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, SMALLER, ABSENT, OPPOSITE, INCONCLUSIVE)

DIRECTIONAL, EQUIVALENCE, NONINFERIORITY = "directional", "equivalence", "non-inferiority"
KINDS = (DIRECTIONAL, EQUIVALENCE, NONINFERIORITY)
SLOTS = ("support", "opposite", "sesoi")

ALPHA_SIGN = 0.025   # one-sided: each tail of a 95 % interval (a sign, or beyond a margin)
ALPHA_SESOI = 0.05   # one-sided: the 90 % interval (TOST, non-inferiority, "below δ")
POWER_TARGET = 0.8   # the MDE is the effect detected with this probability
ALPHA = {  # (kind, test) -> one-sided level
    (DIRECTIONAL, "support"): ALPHA_SIGN, (DIRECTIONAL, "opposite"): ALPHA_SIGN,
    (DIRECTIONAL, "sesoi"): ALPHA_SESOI,
    (EQUIVALENCE, "support"): ALPHA_SESOI, (EQUIVALENCE, "opposite"): ALPHA_SIGN,
    (NONINFERIORITY, "support"): ALPHA_SESOI, (NONINFERIORITY, "opposite"): ALPHA_SIGN,
}

TABLE_COLUMNS = ("claim", "variant", "primary", "kind", "estimate", "lo95", "hi95", "lo90", "hi90",
                 "n", "n_counts", "unit", "scale", "sesoi", "sesoi_reason", "paper", "mde", "power", "power_basis",
                 "p_support", "p_support_holm", "p_opposite", "p_opposite_holm", "p_sesoi",
                 "p_sesoi_holm", "family", "verdict", "verdict_unadjusted", "holm_changed",
                 "design", "paper_compatible", "headline", "also_opposite", "statistic", "rule",
                 "note")
UNDERPOWERED_BELOW = 0.5   # power at the SESOI under which a design is flagged as futile
DIGITS = 3  # significant digits in statistic strings

_KIND_RULES = {
    DIRECTIONAL: ("e oriented so the paper's direction is positive; opposite if H0 e >= 0 is "
                  "rejected at 2.5 % (95 % CI below 0); reproduced if H0 e <= 0 is rejected at "
                  "2.5 % (95 % CI above 0) and H0 e >= δ is not rejected at 5 % (90 % CI reaches "
                  "δ); smaller than the paper's if both are rejected; absent if only e >= δ is "
                  "rejected; else inconclusive"),
    EQUIVALENCE: ("neutral within ±δ: reproduced if both one-sided tests of |e| >= δ reject at "
                  "5 % (TOST; 90 % CI inside ±δ); opposite (not neutral) if the 95 % CI lies "
                  "entirely beyond +δ or -δ; else inconclusive"),
    NONINFERIORITY: ("reproduced if H0 e >= δ is rejected at 5 % (90 % CI below δ); opposite if "
                     "the 95 % CI lies entirely above δ; else inconclusive"),
}


@dataclass(frozen=True)
class Sesoi:
    """The smallest effect of interest of a claim (or a part of it), in display units (a ratio for
    log-scale rows), with the reason it was set to that value."""

    value: float
    reason: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"SESOI must be a finite number > 0, got {self.value!r} ({self.reason})")


@dataclass(frozen=True)
class Evidence:
    """One variant of one claim, before the claim's multiplicity correction.

    ``dist``: the sampling distribution of the effect on the additive scale (the log of a ratio
    when ``scale`` is "log"), oriented so the paper's direction is positive (for equivalence and
    non-inferiority: the difference itself). ``paper``: the official release's value of the same
    quantity, in display units and the same orientation (NaN when it has none). ``statistic``:
    what the effect is, in words. ``note``: conditions a reader must know (one teacher run, a
    width gap, ...).
    """

    claim: str
    variant: str
    kind: str
    dist: Dist
    sesoi: Sesoi
    unit: str
    statistic: str
    primary: bool = False
    paper: float = math.nan
    scale: str = "linear"
    method: str = ""
    note: str = ""
    planned_sd: float = math.nan     # the SD of one replicate the power assumes, set before the
    sd_source: str = ""              # data (a pilot); NaN: the observed spread (sd_source says)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.scale not in ("linear", "log"):
            raise ValueError(f"scale must be 'linear' or 'log', got {self.scale!r}")
        if self.scale == "log" and self.sesoi.value <= 1:
            raise ValueError(f"{self.claim} {self.variant}: a log-scale SESOI is a ratio > 1, "
                             f"got {self.sesoi.value}")
        if isinstance(self.dist, MaxMin) and self.kind != DIRECTIONAL:
            raise ValueError("max-min effects are tested directionally only")

    @property
    def delta(self) -> float:
        """δ on the additive scale of ``dist``."""
        return math.log(self.sesoi.value) if self.scale == "log" else self.sesoi.value

    def display(self, x: float) -> float:
        return math.exp(x) if self.scale == "log" else x

    def p_values(self) -> dict[str, float]:
        return {k: float(v) for k, v in pvalues(self.kind, self.dist, self.delta).items()}

    @property
    def power_basis(self) -> str:
        """Where the spread the power assumes comes from."""
        if self.uses_planned_sd:
            return f"planned SD {self.planned_sd:.3g} ({self.sd_source})"
        return "observed spread" + (f" ({self.sd_source})" if self.sd_source else "")

    @property
    def uses_planned_sd(self) -> bool:
        return math.isfinite(self.planned_sd) and type(self.dist) is TDist

    def power(self) -> float:
        """Power of the support test at the SESOI (directional: true e = δ; equivalence and
        non-inferiority: true e = 0), before Holm, with the replicate SD set before the data
        (``planned_sd``, a t distribution over seeds) or else the observed spread."""
        d = self.dist
        if self.uses_planned_sd:
            d = TDist(d.mean, np.float64(self.planned_sd / math.sqrt(d.n)), d.n)
        if self.kind == DIRECTIONAL:
            return d.power(self.delta, ALPHA_SIGN)
        if self.kind == EQUIVALENCE:
            return d.power_equivalence(self.delta, ALPHA_SESOI)
        return d.power(self.delta, ALPHA_SESOI)  # P(upper bound < δ) at e = 0, by symmetry

    def rule(self) -> str:
        return (f"{_KIND_RULES[self.kind]}; {self.method or describe_dist(self.dist)}; p-values "
                f"Holm-adjusted within the claim over its {'primary' if self.primary else 'secondary'} "
                f"variants (docs/design.md §8)")

    def row(self) -> dict:
        """The table row before Holm: the columns of ``TABLE_COLUMNS`` except the adjusted
        p-values, verdicts and headline."""
        d = self.dist
        show = self.display
        mde = d.mde(ALPHA_SIGN, POWER_TARGET)
        return {"claim": self.claim, "variant": self.variant, "primary": bool(self.primary),
                "kind": self.kind, "estimate": show(float(d.mean)),
                "lo95": show(float(d.lower(ALPHA_SIGN))), "hi95": show(float(d.upper(ALPHA_SIGN))),
                "lo90": show(float(d.lower(ALPHA_SESOI))), "hi90": show(float(d.upper(ALPHA_SESOI))),
                "n": int(d.n), "n_counts": n_counts(d), "unit": self.unit, "scale": self.scale,
                "sesoi": self.sesoi.value,
                "sesoi_reason": self.sesoi.reason, "paper": float(self.paper),
                "mde": show(mde) if math.isfinite(mde) else math.nan, "power": self.power(),
                "power_basis": self.power_basis,
                **{f"p_{k}": v for k, v in self.p_values().items()},
                "statistic": self.statistic, "rule": self.rule(), "note": self.note}


def n_counts(dist: Dist) -> str:
    """What ``n`` counts: the replicate the interval resamples."""
    if isinstance(dist, MaxMin):
        return n_counts(dist.arms)
    if isinstance(dist, SlopeDist):
        return "points"
    return "images" if isinstance(dist, Replicates) else "seeds"


def describe_dist(dist: Dist) -> str:
    """How the interval and tests of ``dist`` are made, in words."""
    if isinstance(dist, MaxMin):
        inner = describe_dist(dist.arms)
        a, k = dist.shape
        return (f"max over {k} candidate layer(s) of the min over {a} arm(s), each arm {inner}; "
                f"lower bound and support test Bonferroni over the {k} candidates, upper bound "
                f"over the {a} arm(s), so choosing the minimum from the data does not bias it")
    if isinstance(dist, SlopeDist):
        return f"least-squares slope over {dist.n} points, t with {dist.n - 2} df"
    if isinstance(dist, Replicates):
        return (f"percentile bootstrap over {dist.n} images ({dist.reps.shape[-1]} resamples), "
                f"p = (1 + replicates on the null side) / (B + 1)")
    return f"paired t over {dist.n} seed(s)"


# ----------------------------------------------------------------------------- tests and verdicts


def pvalues(kind: str, dist: Dist, delta: float) -> dict[str, np.ndarray]:
    """The raw one-sided p-values of one variant (or of many at once: arrays broadcast over the
    distribution's leading axes). ``delta``: δ on the distribution's additive scale."""
    if kind == DIRECTIONAL:
        return {"support": dist.p_greater(0.0), "opposite": dist.p_less(0.0),
                "sesoi": dist.p_less(delta)}
    nan = np.full(np.shape(dist.mean), np.nan)
    if kind == EQUIVALENCE:
        return {"support": np.maximum(dist.p_greater(-delta), dist.p_less(delta)),
                "opposite": np.minimum(dist.p_greater(delta), dist.p_less(-delta)), "sesoi": nan}
    if kind == NONINFERIORITY:
        return {"support": dist.p_less(delta), "opposite": dist.p_greater(delta), "sesoi": nan}
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def decide(kind: str, p_support, p_opposite, p_sesoi=math.nan) -> np.ndarray:
    """Verdicts from (adjusted) one-sided p-values, elementwise; NaN p-values (one seed) reject
    nothing, so they give ``inconclusive``."""
    sup = np.asarray(p_support, dtype=np.float64) < ALPHA[(kind, "support")]
    opp = np.asarray(p_opposite, dtype=np.float64) < ALPHA[(kind, "opposite")]
    if kind == DIRECTIONAL:
        below = np.asarray(p_sesoi, dtype=np.float64) < ALPHA_SESOI
        sup, opp, below = np.broadcast_arrays(sup, opp, below)
        return np.select([opp, sup & ~below, sup & below, below],
                         [OPPOSITE, REPRODUCED, SMALLER, ABSENT], INCONCLUSIVE).astype(object)
    sup, opp = np.broadcast_arrays(sup, opp)
    return np.select([sup, opp], [REPRODUCED, OPPOSITE], INCONCLUSIVE).astype(object)


def combine(parts: Sequence[str]) -> str:
    """One verdict for a claim made of several parts that must all hold (C5: early speed-up, catch
    up, overtake; C6: deeper middle, lower last layer): any part opposite → opposite; else any
    absent → absent; else any smaller → smaller than the paper's; else all reproduced →
    reproduced; else inconclusive. One part: its verdict."""
    parts = list(parts)
    bad = [p for p in parts if p not in VERDICTS]
    if not parts or bad:
        raise ValueError(f"combine: need verdicts from {VERDICTS}, got {parts}")
    for verdict in (OPPOSITE, ABSENT, SMALLER):
        if verdict in parts:
            return verdict
    return REPRODUCED if all(p == REPRODUCED for p in parts) else INCONCLUSIVE


def judge(evidence: Sequence[Evidence]) -> pd.DataFrame:
    """The verdict table of ``evidence``: one row per variant (columns ``TABLE_COLUMNS``),
    decided by :func:`rejudge`."""
    table = pd.DataFrame([e.row() for e in evidence])
    if table.empty:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    return rejudge(table)


def needed_seeds(n: float, mde: float, sesoi: float, scale: str = "linear") -> float:
    """Replicates for an MDE of the SESOI, from the design's own: the MDE shrinks as 1/sqrt(n),
    so n (mde / δ)² (rounded up; the t quantiles' change with n is ignored). NaN if undefined."""
    if not all(math.isfinite(v) for v in (n, mde, sesoi)) or mde <= 0:
        return math.nan
    ratio = math.log(mde) / math.log(sesoi) if scale == "log" else mde / sesoi
    return float(math.ceil(n * ratio ** 2)) if ratio > 0 else math.nan


def _design(row) -> str:
    if not (math.isfinite(row["power"]) and row["power"] < UNDERPOWERED_BELOW):
        return "adequate"
    need = needed_seeds(row["n"], row["mde"], row["sesoi"], row.get("scale", "linear"))
    return (f"underpowered (needs ≈ {need:.0f} replicates)" if math.isfinite(need)
            else "underpowered")


def paper_compatible(row) -> str:
    """Is the paper's value (same quantity, same orientation) compatible with the kit's?
    ``inside the 95 % CI``, ``within the SESOI of the CI``, ``no``, or "" without a paper
    value. "Reproduced" says the effect is there; this says whether it has the paper's size."""
    paper, lo, hi, d = row["paper"], row["lo95"], row["hi95"], row["sesoi"]
    if not all(math.isfinite(v) for v in (paper, lo, hi)):
        return ""
    if lo <= paper <= hi:
        return "inside the 95 % CI"
    near = (lo / d <= paper <= hi * d) if row.get("scale") == "log" else (lo - d <= paper <= hi + d)
    return "within the SESOI of the CI" if near else "no"


def rejudge(table: pd.DataFrame) -> pd.DataFrame:
    """Decide a table of variants from its raw one-sided p-values (``Evidence.row`` columns):

    - Holm within each claim, per kind and test, over its *primary* variants only (the
      pre-declared family); the secondary variants are Holm-adjusted as a family of their own,
      so adding a descriptive variant never changes a headline (``family`` says which);
    - ``verdict`` from the adjusted p-values, ``verdict_unadjusted`` from the raw ones (what the
      printed 95 % / 90 % intervals say), ``holm_changed`` where the two differ;
    - ``design``: ``underpowered (needs ≈ N replicates)`` when the power at the SESOI is below
      ``UNDERPOWERED_BELOW``, else ``adequate``; ``paper_compatible`` (:func:`paper_compatible`);
    - the claim's headline from its primary verdicts (:func:`combine`).
    """
    table = table.copy()
    table["primary"] = table["primary"].astype(bool)
    table["family"] = np.where(table["primary"], "primary", "secondary")
    for slot in SLOTS:
        table[f"p_{slot}_holm"] = np.nan
    for _, idx in table.groupby(["claim", "kind", "family"], sort=False).groups.items():
        for slot in SLOTS:
            table.loc[idx, f"p_{slot}_holm"] = holm(table.loc[idx, f"p_{slot}"].to_numpy(float))

    def verdicts(suffix: str) -> list[str]:
        return [decide(k, s, o, b).item() for k, s, o, b in
                zip(table["kind"], table[f"p_support{suffix}"], table[f"p_opposite{suffix}"],
                    table[f"p_sesoi{suffix}"])]

    table["verdict"], table["verdict_unadjusted"] = verdicts("_holm"), verdicts("")
    table["holm_changed"] = table["verdict"] != table["verdict_unadjusted"]
    table["design"] = [_design(r) for r in table.to_dict("records")]
    table["paper_compatible"] = [paper_compatible(r) for r in table.to_dict("records")]
    table["headline"], table["also_opposite"] = "", ""
    for claim, rows in table.groupby("claim", sort=False):
        primary = rows[rows["primary"]]
        if primary.empty:
            raise ValueError(f"claim {claim}: no primary variant; mark the pre-declared one(s)")
        others = rows[~rows["primary"] & (rows["verdict"] == OPPOSITE)]
        table.loc[rows.index, "headline"] = combine(primary["verdict"].tolist())
        table.loc[rows.index, "also_opposite"] = "; ".join(others["variant"])
    return table[list(TABLE_COLUMNS)]


# ----------------------------------------------------------------------------- effect builders
# Plain arrays in, a sampling distribution out (ddkit.verdicts.stats); leading axes broadcast, so the
# calibration tests build thousands of simulated studies at once.


def paired(a, b) -> TDist:
    """a - b paired over the last axis (seeds): a t distribution over the n pairs. a, b [..., n]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same shape: {a.shape} vs {b.shape}")
    return TDist.of(a - b)


def log_ratio(num, den) -> TDist:
    """log(num / den) paired over the last axis (all values > 0): its t distribution; the
    geometric-mean ratio is its exp."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if (num <= 0).any() or (den <= 0).any():
        raise ValueError("log_ratio needs positive values (losses)")
    return paired(np.log(num), np.log(den))


ARMS = ("first", "last")


def u_depth(profiles, arms: Sequence[str] = ARMS, point=None, n_images: int = 0) -> MaxMin:
    """The depth of a U in per-layer profiles: D = max over interior layers k of
    min over ``arms`` of (end - x_k); with both arms min(x_first, x_last) - min_interior x.
    D > 0: some interior layer lies below both ends (a U); D < 0: an end is the lowest (monotone).
    One arm: "first - min" or "last - min" over the interior.

    ``profiles`` [..., S, L] (L >= 3): rows are seeds (t per arm) — or, with ``point`` [..., L]
    given, bootstrap replicates with ``point`` the full-sample profile (percentile per arm) over
    ``n_images`` resampled images.
    """
    P = np.asarray(profiles, dtype=np.float64)
    if P.ndim < 2 or P.shape[-1] < 3:
        raise ValueError(f"profiles: expected [..., S, L] with L >= 3 layers, got shape {P.shape}")
    if not np.isfinite(P).all():
        raise ValueError("profiles: contains non-finite values (NaN/inf)")
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        raise ValueError(f"arms must be a non-empty subset of {ARMS}, got {list(arms)}")
    ends = {"first": P[..., :1], "last": P[..., -1:]}
    diffs = np.stack([ends[a] - P[..., 1:-1] for a in arms], axis=-2)  # [..., S, A, K]
    if point is None:
        return MaxMin(TDist.of(np.moveaxis(diffs, -3, -1)))           # arms [..., A, K]
    p = np.asarray(point, dtype=np.float64)
    pe = {"first": p[..., :1], "last": p[..., -1:]}
    centre = np.stack([pe[a] - p[..., 1:-1] for a in arms], axis=-2)  # [..., A, K]
    return MaxMin(Replicates(centre, np.moveaxis(diffs, -3, -1), n=n_images))


def u_depth_of(profiles, arms: Sequence[str] = ARMS) -> float:
    """``u_depth``'s estimate without sampling: of one profile [L], or of the seeds' mean of
    ``profiles`` [S, L] (max_k min_arms of the mean (end - x_k))."""
    P = np.atleast_2d(np.asarray(profiles, dtype=np.float64))
    return float(u_depth(np.repeat(P, 2, axis=0), arms).mean)


def interior_min(profiles) -> np.ndarray:
    """Per row, the minimum over the interior layers 1 .. L-2: [..., S, L] -> [..., S]."""
    P = np.asarray(profiles, dtype=np.float64)
    if P.shape[-1] < 3:
        raise ValueError(f"profiles: need L >= 3 layers, got shape {P.shape}")
    return P[..., 1:-1].min(axis=-1)


def fmt(x: float, digits: int = DIGITS) -> str:
    """A number with ``digits`` significant digits, sign shown ("+0.627", "-1.14e-05")."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:+.{digits}g}"


def fmt_interval(row) -> str:
    """``"+0.627 [-0.052, +1.31]"``: a table row's estimate and 95 % interval, as ``fmt``."""
    return f"{fmt(row['estimate'])} [{fmt(row['lo95'])}, {fmt(row['hi95'])}]"


def pt_interval(row) -> str:
    """``"+0.63 [-0.05, +1.31] pt"``: a table row's estimate and 95 % interval in points, two
    decimals."""
    return f"{row['estimate']:+.2f} [{row['lo95']:+.2f}, {row['hi95']:+.2f}] pt"


def estimate_text(e: Evidence) -> str:
    """``"+0.627 [-0.052, +1.31] pt (n=3)"`` from the evidence's display values."""
    d = e.dist
    show = e.display
    ci = f"[{fmt(show(float(d.lower(ALPHA_SIGN))))}, {fmt(show(float(d.upper(ALPHA_SIGN))))}]"
    unit = f" {e.unit}" if e.unit else ""
    return f"{fmt(show(float(d.mean)))} {ci}{unit} (n={d.n})"


__all__ = ["REPRODUCED", "SMALLER", "ABSENT", "OPPOSITE", "INCONCLUSIVE", "VERDICTS",
           "DIRECTIONAL", "EQUIVALENCE", "NONINFERIORITY", "KINDS", "ALPHA", "ALPHA_SIGN",
           "ALPHA_SESOI", "TABLE_COLUMNS", "Sesoi", "Evidence", "pvalues", "decide", "combine",
           "rejudge", "needed_seeds",
           "judge", "paired", "log_ratio", "u_depth", "u_depth_of", "interior_min", "describe_dist", "fmt",
           "fmt_interval", "pt_interval", "estimate_text"]
