"""The follow-up's prediction judged as it is stated (docs/design.md §12): late alignment hurts
where the encoding mismatch is above 1 and does not hurt below it, a sign change at 1.

Written and fixed before the controlled-dimension design and the replication trained. A map is
a table of points (``phase_map.points``: per setting and aligned cell, SoftKD - cell final top-1
paired by seed, its mean ``estimate``, standard error ``se`` and ``n`` seed pairs, and the
point's mismatch ``ratio``). Two primary parts, both needed:

    harm above 1     the points with a ratio above 1 pooled by random effects (DerSimonian-Laird
                     between-point variance, Hartung-Knapp-Sidik-Jonkman interval, its scale
                     floored at 1, t over points - 1 df: ``verdicts.stats.pooled_random_effects``),
                     each point's own variance its seed-paired se²; directional against 0,
                     compared with the SESOI
    no harm below 1  the points below 1 pooled the same way; non-inferiority at the same SESOI
                     (the 90 % interval below δ)

``MAP`` verdicts come from ``claims.judge`` (``reproduced`` needs both parts; ``opposite`` when
either is significantly reversed: the pooled effect above 1 below 0, or the one below 1 beyond δ).
Secondary, reported beside it, never part of the verdict: the hinge model (a slope on each side
of 1), the single slope the kit used before, and how well student width alone and the teacher's
dimension alone explain the points (OLS, R² and AIC).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm

from ddkit.studies import remedy_verdicts
from ddkit.verdicts import claims
from ddkit.verdicts.claims import DIRECTIONAL, NONINFERIORITY, Evidence, Sesoi
from ddkit.verdicts.stats import pooled_random_effects

BOUNDARY = 1.0       # the follow-up's predicted sign change, in units of the mismatch ratio
ABOVE, BELOW = "harm above 1", "no harm below 1"


def sesoi(logs: pd.DataFrame | None = None) -> Sesoi:
    """δ of the map's rule: the remedies' δ, a fifth of the release's MAE penalty (the release's
    one setting where the follow-up's ratio is above 1 and alignment clearly hurts)."""
    base = remedy_verdicts.sesoi(logs)
    return Sesoi(base.value, f"a fifth of the release's MAE penalty ({base.value / 0.2:.2f} pt), "
                             "where the follow-up's ratio is 1.2-1.9: harm at least that large "
                             "above 1, and none that large below 1")


def evidence(points: pd.DataFrame, cell: str, claim: str, delta: Sesoi, primary: bool = True,
             note: str = "") -> list[Evidence]:
    """The two parts of the rule for ``cell``'s points (each part needs two points)."""
    rows = points[points["cell"] == cell]
    out = []
    for part, side, kind in ((ABOVE, rows["ratio"] > BOUNDARY, DIRECTIONAL),
                             (BELOW, rows["ratio"] <= BOUNDARY, NONINFERIORITY)):
        sub = rows[side]
        if len(sub) < 2:
            continue
        out.append(Evidence(
            claim=claim, variant=f"{part}: SoftKD - {cell} pooled over {len(sub)} points",
            kind=kind, dist=pooled_random_effects(sub["estimate"], sub["se"]), sesoi=delta, unit="pt",
            primary=primary,
            statistic=(f"random-effects mean (DerSimonian-Laird, Hartung-Knapp t with "
                       f"{len(sub) - 1} df) of SoftKD - {cell} final top-1 over the "
                       f"{len(sub)} points with a mismatch {'above' if part == ABOVE else 'at or below'} "
                       f"1, each point paired by seed"),
            note=note or "points of a map; the mismatch is the follow-up's (99th percentile)"))
    return out


def judge(points: pd.DataFrame, claim: str = "MAP", cells: Sequence[str] = ("SpectralKD-Last",
          "ProjectorKD-Last"), delta: Sesoi | None = None, note: str = "") -> pd.DataFrame:
    """The verdict table of the rule: the first of ``cells`` primary, the others secondary (a
    Holm family of their own). ``headline``: both primary parts combined (``claims.combine``)."""
    delta = delta or sesoi()
    ev = [e for i, cell in enumerate(cells)
          for e in evidence(points, cell, claim, delta, primary=i == 0, note=note)]
    return claims.judge(ev)


def headline(table: pd.DataFrame) -> str:
    """The rule's verdict: both primary parts combined; ``inconclusive`` when a part is missing
    (fewer than two points on a side)."""
    parts = table[table["primary"].astype(bool)]
    if len(parts) < 2:
        return claims.INCONCLUSIVE
    return claims.combine(list(parts["verdict"]))


# --------------------------------------------------------------------------- secondary models

def _ols(y: np.ndarray, columns: dict[str, np.ndarray]) -> dict:
    x = sm.add_constant(np.column_stack(list(columns.values())), has_constant="add")
    fit = sm.OLS(y, x).fit()
    out = {"r2": float(fit.rsquared), "aic": float(fit.aic), "n": int(fit.nobs)}
    for i, name in enumerate(columns, start=1):
        lo, hi = fit.conf_int(0.05)[i]
        out[name] = (float(fit.params[i]), float(lo), float(hi))
    return out


def models(points: pd.DataFrame, cell: str = "SpectralKD-Last") -> pd.DataFrame:
    """Secondary fits over ``cell``'s points (each point one value, its seed mean; OLS, 95 % t
    intervals), one row per model and term: ``slope`` (on log2 ratio, the kit's former rule),
    ``hinge`` (separate slopes below and above a ratio of 1), ``width`` (log2 student width
    alone), ``dimension`` (log2 teacher dimension alone), ``both`` (width and dimension side by
    side; the follow-up predicts a positive dimension and a negative width term of equal size),
    and, where a (task, width) holds several points (the controlled-dimension design),
    ``within width`` (log2 ratio with one intercept per task and width: does harm grow with the
    target's dimension at a fixed width?). Rows (model, term, coef, lo95, hi95, r2, aic, n)."""
    rows = points[points["cell"] == cell]
    if len(rows) < 4:
        return pd.DataFrame(columns=["model", "term", "coef", "lo95", "hi95", "r2", "aic", "n"])
    y = rows["estimate"].to_numpy(np.float64)
    x = np.log2(rows["ratio"].to_numpy(np.float64))
    width = np.log2(rows["width"].to_numpy(np.float64))
    dim = np.log2(rows["teacher_dim"].to_numpy(np.float64))
    fits = {"slope": _ols(y, {"log2 ratio": x}),
            "hinge": _ols(y, {"log2 ratio below 1": np.minimum(x, 0),
                              "log2 ratio above 1": np.maximum(x, 0)}),
            "width": _ols(y, {"log2 width": width}),
            "dimension": _ols(y, {"log2 teacher dim": dim}),
            "both": _ols(y, {"log2 teacher dim": dim, "log2 width": width})}
    groups = rows["task"].astype(str) + ", width " + rows["width"].astype(str)
    if groups.nunique() < len(rows):
        dummies = {f"intercept {g}": (groups == g).to_numpy(np.float64)
                   for g in sorted(groups.unique())[1:]}
        fits["within width"] = _ols(y, {"log2 ratio": x, **dummies})
    out = []
    for model, fit in fits.items():
        for term, value in fit.items():
            if isinstance(value, tuple):
                out.append({"model": model, "term": term, "coef": value[0], "lo95": value[1],
                            "hi95": value[2], "r2": fit["r2"], "aic": fit["aic"], "n": fit["n"]})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- calibration

def simulate(points: pd.DataFrame, truth: Sequence[float], draws: int = 2000,
             cell: str = "SpectralKD-Last", delta: float | None = None,
             seed: int = 0) -> np.ndarray:
    """The rule's headline on ``draws`` maps simulated at ``cell``'s points (their ratio, seed
    pairs ``n`` and seed-level SD ``se · √n``), each point's paired differences drawn normal
    around ``truth`` [points, in the order of ``cell``'s rows]. Returns [draws] verdicts."""
    rows = points[points["cell"] == cell]
    truth = np.asarray(truth, dtype=np.float64)
    if truth.shape != (len(rows),):
        raise ValueError(f"simulate: truth needs one value per {cell} point ({len(rows)}), "
                         f"got shape {truth.shape}")
    delta = sesoi().value if delta is None else delta
    rng = np.random.default_rng(seed)
    n = rows["n"].to_numpy(int)
    sd = rows["se"].to_numpy(np.float64) * np.sqrt(n)
    est, se = np.empty((draws, len(rows))), np.empty((draws, len(rows)))
    for j in range(len(rows)):
        diffs = rng.normal(truth[j], sd[j], size=(draws, n[j]))
        est[:, j], se[:, j] = diffs.mean(1), diffs.std(1, ddof=1) / np.sqrt(n[j])
    above = rows["ratio"].to_numpy(np.float64) > BOUNDARY
    parts = []
    for side, kind in ((above, DIRECTIONAL), (~above, NONINFERIORITY)):
        dist = pooled_random_effects(est[:, side], se[:, side])
        p = claims.pvalues(kind, dist, delta)
        parts.append(claims.decide(kind, p["support"], p["opposite"], p["sesoi"]))
    return np.array([claims.combine(pair) for pair in zip(*parts)], dtype=object)


def rates(verdicts: np.ndarray) -> dict[str, float]:
    """The share of each verdict among simulated headlines."""
    values, counts = np.unique(verdicts.astype(str), return_counts=True)
    return {str(v): c / len(verdicts) for v, c in zip(values, counts)}
