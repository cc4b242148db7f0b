"""Calibration: each verdict rule, run on simulated studies with a known effect (zero, half the
SESOI, the SESOI, the opposite) at the study's own n, gives verdicts at the rates its design
promises (docs/design.md §8). Thousands of studies are judged at once (the rules are vectorised),
so the whole file takes seconds.

MC tolerance: 3 Monte-Carlo standard errors of a rate, sqrt(p (1 - p) / R).
The spreads (SD of a paired difference over seeds) are about what the default profile's first
3-seed run showed: 0.3 pt for final top-1, 0.1 for log loss ratios, 0.05 bits for entropy.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from ddkit.core.config import load_profile
from ddkit.signals import image_bootstrap
from ddkit.verdicts import sesoi
from ddkit.verdicts.claims import (
    ABSENT,
    DIRECTIONAL,
    EQUIVALENCE,
    NONINFERIORITY,
    OPPOSITE,
    REPRODUCED,
    SMALLER,
    decide,
    pvalues,
    u_depth,
)
from ddkit.verdicts.stats import Replicates, TDist, holm, t_power, t_quantile, tost_power

R = 20_000  # simulated studies per condition
PROFILE = load_profile("default")
PAPER = sesoi.Paper()


def n_pairs(a: str, b: str) -> int:
    """The study's n for a paired comparison: the seeds both cells have in the default profile."""
    return len(set(PROFILE.seeds_for(a)) & set(PROFILE.seeds_for(b)))


def mc(p: float, r: int = R) -> float:
    return 3 * math.sqrt(max(p * (1 - p), 1e-4) / r)


def verdict_rates(kind: str, dist, delta: float) -> dict[str, float]:
    p = pvalues(kind, dist, delta)
    v = decide(kind, p["support"], p["opposite"], p["sesoi"])
    return {name: float(np.mean(v == name)) for name in (REPRODUCED, SMALLER, ABSENT, OPPOSITE)}


def paired_studies(effect: float, sd: float, n: int, seed: int = 0) -> TDist:
    """R simulated studies of n paired differences with mean ``effect``: a TDist of shape [R]."""
    rng = np.random.default_rng(seed)
    return TDist.of(effect + sd * rng.standard_normal((R, n)))


# ----------------------------------------------------------------------------- directional (C3)


def test_directional_rule_at_the_study_n():
    n, sd = n_pairs("SoftKD", "SpectralKD-Last"), 0.3
    assert n >= 10                                    # the default profile's cell_seeds
    delta = sesoi.sesoi_c3(PAPER, "SpectralKD", "final").value
    se = sd / math.sqrt(n)
    support_at_delta = float(t_power(delta / se, n - 1, 0.025))
    at = {e: verdict_rates(DIRECTIONAL, paired_studies(e, sd, n, seed=i), delta)
          for i, e in enumerate((0.0, delta / 2, delta, -delta))}
    # no effect: a false "effect in the paper's direction" at most 2.5 % (<= 5 % asked)
    false_effect = at[0.0][REPRODUCED] + at[0.0][SMALLER]
    assert false_effect <= 0.025 + mc(0.025)
    assert at[0.0][OPPOSITE] <= 0.025 + mc(0.025)
    # the paper's effect: never "opposite" beyond the noncentral-t probability (< 0.5 %)
    p_opp = float(t_power(-delta / se, n - 1, 0.025))  # P(95 % CI below 0 | e = δ), by symmetry
    assert at[delta][OPPOSITE] == pytest.approx(p_opp, abs=mc(p_opp))
    assert at[delta][OPPOSITE] < 0.005
    # at the SESOI the support test fires at the computed power
    support = at[delta][REPRODUCED] + at[delta][SMALLER]
    assert support == pytest.approx(support_at_delta, abs=mc(support_at_delta))
    assert at[delta][REPRODUCED] <= support
    # half the effect lies in between; the opposite effect mirrors the SESOI
    assert at[0.0][REPRODUCED] < at[delta / 2][REPRODUCED] < at[delta][REPRODUCED]
    assert at[-delta][OPPOSITE] == pytest.approx(support_at_delta, abs=mc(support_at_delta))
    assert at[-delta][REPRODUCED] == pytest.approx(p_opp, abs=mc(p_opp))
    # "absent" at no effect: the 90 % upper bound below δ, minus the studies that show a sign
    below = float(t_power(delta / se, n - 1, 0.05))
    assert below - 0.05 - mc(below) <= at[0.0][ABSENT] <= below + mc(below)


def test_absent_is_reached_when_the_power_allows():
    n, sd = n_pairs("SoftKD", "SpectralKD-Last"), 0.08   # precise runs: power ~0.99 at the SESOI
    delta = sesoi.sesoi_c3(PAPER, "SpectralKD", "final").value
    below = float(t_power(delta / (sd / math.sqrt(n)), n - 1, 0.05))
    assert below > 0.95
    rates = verdict_rates(DIRECTIONAL, paired_studies(0.0, sd, n, seed=7), delta)
    assert rates[ABSENT] >= below - 0.05 - mc(below)
    rates = verdict_rates(DIRECTIONAL, paired_studies(delta / 2, sd, n, seed=8), delta)
    assert rates[SMALLER] > 0.5                       # real but below the SESOI, recognised


def test_holm_keeps_the_family_wise_error_of_a_claim():
    n, sd, k = n_pairs("SoftKD", "SpectralKD-Last"), 0.3, 4
    delta = 0.156
    rng = np.random.default_rng(11)
    d = TDist.of(sd * rng.standard_normal((R, k, n)))     # k null variants per study
    p = pvalues(DIRECTIONAL, d, delta)
    adj = np.apply_along_axis(holm, 1, p["support"])
    any_false = np.mean((decide(DIRECTIONAL, adj, 1.0, 1.0) == REPRODUCED).any(axis=1))
    raw_false = np.mean((p["support"] < 0.025).any(axis=1))
    assert any_false <= 0.025 + mc(0.025) < raw_false       # without Holm: about 1 - 0.975^4


# ----------------------------------------------------------------------------- equivalence, non-inferiority


def test_equivalence_rule_c3_early():
    n = n_pairs("SoftKD", "SpectralKD-First")
    delta = sesoi.sesoi_c3_early(PAPER, "SpectralKD", "final").value
    for sd in (0.3, 0.05):                               # the study's spread; a precise one
        se = sd / math.sqrt(n)
        at_zero = verdict_rates(EQUIVALENCE, paired_studies(0.0, sd, n, seed=1), delta)
        power = float(tost_power(delta / se, n - 1, 0.05))
        assert at_zero[REPRODUCED] == pytest.approx(power, abs=mc(power))
        assert at_zero[OPPOSITE] <= 0.025 + mc(0.025)
        # at the margin "neutral" is wrong: at most 5 % (each one-sided test at 5 %)
        at_margin = verdict_rates(EQUIVALENCE, paired_studies(delta, sd, n, seed=2), delta)
        assert at_margin[REPRODUCED] <= 0.05 + mc(0.05)
        assert at_margin[OPPOSITE] <= 0.025 + mc(0.025)
    # the study's spread leaves neutrality nearly out of reach: the reason power is in the table
    assert float(tost_power(delta / (0.3 / math.sqrt(n)), n - 1, 0.05)) < 0.1
    far = verdict_rates(EQUIVALENCE, paired_studies(4 * delta, 0.05, n, seed=3), delta)
    assert far[OPPOSITE] > 0.99


def test_noninferiority_rule_c5_catch_up():
    n, sd = n_pairs("SoftKD", "SpectralKD-Last"), 0.1
    delta = sesoi.sesoi_c5_caught_up(PAPER).value
    at_margin = verdict_rates(NONINFERIORITY, paired_studies(delta, sd, n, seed=4), delta)
    assert at_margin[REPRODUCED] <= 0.05 + mc(0.05) and at_margin[OPPOSITE] <= 0.025 + mc(0.025)
    at_zero = verdict_rates(NONINFERIORITY, paired_studies(0.0, sd, n, seed=5), delta)
    assert at_zero[REPRODUCED] > 0.99 and at_zero[OPPOSITE] == 0.0
    open_gap = verdict_rates(NONINFERIORITY, paired_studies(2 * delta, sd, n, seed=6), delta)
    assert open_gap[OPPOSITE] > 0.99


# ----------------------------------------------------------------------------- C4: log ratio


def test_log_ratio_rule_c4():
    n, sd_log = n_pairs("SpectralKD-Last", "SpectralKD-First"), 0.1
    delta = math.log(sesoi.sesoi_c4(PAPER).value)
    at_one = verdict_rates(DIRECTIONAL, paired_studies(0.0, sd_log, n, seed=12), delta)
    assert at_one[REPRODUCED] + at_one[SMALLER] <= 0.025 + mc(0.025)
    assert at_one[ABSENT] > 0.95                       # a ratio of 1 excludes 6x: absent
    twice = verdict_rates(DIRECTIONAL, paired_studies(math.log(2.26), sd_log, n, seed=13), delta)
    assert twice[SMALLER] > 0.99                       # the kit's first 2.26x: smaller than the paper's
    paper = verdict_rates(DIRECTIONAL, paired_studies(math.log(37.2), sd_log, n, seed=14), delta)
    assert paper[REPRODUCED] > 0.99 and paper[OPPOSITE] == 0.0


# ----------------------------------------------------------------------------- C1: the U's depth


def profiles(depth: float, L: int, n: int, sd: float, seed: int, rho: float = 0.5,
             first: float = 0.0) -> np.ndarray:
    """R studies of n seeds' entropy profiles [R, n, L]: flat at 2 bits except the interior layer
    L // 2, ``depth`` below both ends, and the first layer ``first`` higher; per-seed offsets shared
    by all layers, and layer noise with correlation ``rho`` between neighbours (a residual
    stream)."""
    rng = np.random.default_rng(seed)
    mu = np.full(L, 2.0)
    mu[L // 2] -= depth
    mu[0] += first
    z = rng.standard_normal((R, n, L))
    noise = np.empty_like(z)
    noise[..., 0] = z[..., 0]
    for layer in range(1, L):
        noise[..., layer] = rho * noise[..., layer - 1] + math.sqrt(1 - rho ** 2) * z[..., layer]
    return mu + 0.2 * rng.standard_normal((R, n, 1)) + sd * noise


def naive_u(P: np.ndarray) -> np.ndarray:
    """The plug-in rule this replaces: pick the interior minimum from the mean profile, then test
    both arms against it at 2.5 % as if the layer had been fixed in advance. -> reject [R]."""
    n = P.shape[1]
    k = 1 + P[..., 1:-1].mean(axis=1).argmin(axis=-1)            # [R]
    at = np.take_along_axis(P, k[:, None, None].repeat(n, 1), axis=2)[..., 0]
    first, last = TDist.of(P[..., 0] - at), TDist.of(P[..., -1] - at)
    return (first.lower(0.025) > 0) & (last.lower(0.025) > 0)


@pytest.mark.parametrize("L", [4, 8])
@pytest.mark.parametrize("first", [0.0, 1.0])
def test_u_depth_is_valid_without_a_u(L, first):
    """No U: a flat profile, and the hardest case, an L shape (the first layer far above a flat
    rest: the compression arm is certain, the expansion arm exactly zero)."""
    n, sd = len(PROFILE.seeds_for("SoftKD")), 0.05
    delta = sesoi.sesoi_c1(PAPER).value
    P = profiles(0.0, L, n, sd, seed=L, first=first)
    rates = verdict_rates(DIRECTIONAL, u_depth(P), delta)
    assert rates[REPRODUCED] + rates[SMALLER] <= 0.025 + mc(0.025)
    assert rates[OPPOSITE] <= 0.025 + mc(0.025)   # no end is the lowest either
    if first and L == 8:  # choosing the minimum from the data, then testing it, calls a U too often
        assert float(naive_u(P).mean()) > 0.025 + mc(0.025)


def test_u_depth_finds_a_real_u_and_a_monotone_profile():
    n, sd, L = len(PROFILE.seeds_for("SoftKD")), 0.05, 4
    delta = sesoi.sesoi_c1(PAPER).value
    u = verdict_rates(DIRECTIONAL, u_depth(profiles(2 * delta, L, n, sd, seed=21)), delta)
    assert u[REPRODUCED] > 0.95 and u[OPPOSITE] == 0.0
    at_sesoi = u_depth(profiles(delta, L, n, sd, seed=22))
    support = np.mean(at_sesoi.p_greater(0.0) < 0.025)
    assert support > 0.8                                   # the default profile's n sees δ
    rng = np.random.default_rng(23)
    rising = np.linspace(1.8, 2.4, L) + 0.2 * rng.standard_normal((R, n, 1)) + sd * rng.standard_normal((R, n, L))
    mono = verdict_rates(DIRECTIONAL, u_depth(rising), delta)
    assert mono[OPPOSITE] > 0.99 and mono[REPRODUCED] == 0.0


# ----------------------------------------------------------------------------- image bootstrap rows


def test_bootstrap_rule_at_no_effect():
    r_sims, n_img, b = 800, 100, 1000
    rng = np.random.default_rng(31)
    x = rng.standard_normal((r_sims, n_img))                      # per-image differences, true mean 0
    counts = image_bootstrap.resample_counts(n_img, b, seed=32)[1]       # [B, n]
    reps = (counts @ x.T / n_img).T                               # [R, B]
    rates = verdict_rates(DIRECTIONAL, Replicates(x.mean(1), reps, n_img), 0.2)
    assert rates[REPRODUCED] + rates[SMALLER] <= 0.025 + mc(0.025, r_sims)
    assert rates[OPPOSITE] <= 0.025 + mc(0.025, r_sims)
    se = 1 / math.sqrt(n_img)
    assert rates[ABSENT] == pytest.approx(float(t_power(0.2 / se, math.inf, 0.05)) - 0.05,
                                          abs=0.05 + mc(0.5, r_sims))
    assert t_quantile(0.975, 1e9) == pytest.approx(1.96, abs=1e-3)
