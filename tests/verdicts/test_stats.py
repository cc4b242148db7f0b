"""ddkit.verdicts.stats: t quantiles against table values, intervals against hand-computed ones, input checks;
the scipy-backed tails and powers against plain quadratures, Holm against statsmodels, and the
committed claims table against its own numbers."""
from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr
from statsmodels.stats.multitest import multipletests

from ddkit.verdicts.stats import (
    Estimate,
    MaxMin,
    Replicates,
    TDist,
    bootstrap_ci,
    holm,
    mde_shift,
    mean_ci,
    nct_cdf,
    normal_quantile,
    paired_difference,
    ratio_estimate,
    replicate_interval,
    t_cdf,
    t_power,
    t_quantile,
    t_sf,
    tost_power,
)

# two-sided 95 % critical values from printed t tables (4 decimals)
T_TABLE_975 = [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)]


@pytest.mark.parametrize("df, expected", T_TABLE_975)
def test_t_quantile_matches_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-4)


def test_t_quantile_other_levels_and_limits():
    assert t_quantile(0.995, 3) == pytest.approx(5.8409, abs=1e-4)   # 99 % two-sided, df 3
    assert t_quantile(0.95, 5) == pytest.approx(2.0150, abs=1e-4)    # 90 % two-sided, df 5
    assert t_quantile(0.5, 7) == 0.0
    # df = 1 is the Cauchy: tan(pi (p - 1/2)), also far in the tail
    for p in (0.6, 0.9, 0.999, 1 - 1e-8):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-6)
    for df in (1e5, 1e7, math.inf):
        assert t_quantile(0.975, df) == pytest.approx(1.95996, abs=1e-4)
    # CDF and quantile are inverses, non-integer df included
    for df in (1.5, 2.5, 17.0):
        for p in (0.01, 0.3, 0.8, 0.999):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)


@pytest.mark.parametrize("p, df", [(0.0, 3), (1.0, 3), (0.5, 0), (0.5, -1), (0.5, float("nan"))])
def test_t_quantile_rejects_bad_arguments(p, df):
    with pytest.raises(ValueError):
        t_quantile(p, df)


def test_mean_ci_known_sample():
    e = mean_ci([1, 2, 3, 4, 5])
    sd = math.sqrt(2.5)
    half = 2.7764451 * sd / math.sqrt(5)
    assert (e.mean, e.n) == (3.0, 5)
    assert e.sd == pytest.approx(1.5811, abs=1e-4)
    assert half == pytest.approx(1.9632, abs=1e-4)
    assert e.lo == pytest.approx(3 - half, abs=1e-4) and e.hi == pytest.approx(3 + half, abs=1e-4)
    assert e.half_width == pytest.approx(half, abs=1e-4)
    assert e.format() == "3.00 [1.04, 4.96] (n=5)"
    assert mean_ci([1, 2, 3, 4, 5], level=0.99).half_width > e.half_width


def test_single_value_has_undefined_interval():
    e = mean_ci([0.7])
    assert e.mean == 0.7 and e.n == 1
    assert math.isnan(e.lo) and math.isnan(e.hi) and math.isnan(e.sd)
    assert not e.defined and not e.contains(0.7)
    assert e.format(unit="pt") == "0.70 [no CI] pt (n=1)"
    b = bootstrap_ci([0.7])
    assert math.isnan(b.lo) and math.isnan(b.hi)


def test_estimate_format_and_frozen():
    e = Estimate(-0.31, -0.52, -0.10, 3, 0.08)
    assert e.format() == "-0.31 [-0.52, -0.10] (n=3)"
    assert e.format(unit="pt", digits=1) == "-0.3 [-0.5, -0.1] pt (n=3)"
    with pytest.raises(AttributeError):
        e.mean = 0.0  # type: ignore[misc]


def test_paired_difference_is_mean_ci_of_differences():
    a = np.array([76.9, 77.1, 76.8, 77.3])
    b = np.array([77.0, 77.4, 77.0, 77.5])
    assert paired_difference(a, b) == mean_ci(a - b)
    with pytest.raises(ValueError, match=r"a has 4.*b has 3"):
        paired_difference(a, b[:3])
    with pytest.raises(ValueError, match=r"acc_last has 4.*acc_soft has 2"):
        paired_difference(a, b[:2], names=("acc_last", "acc_soft"))


def test_ratio_estimate_exact_and_noisy():
    e = ratio_estimate([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert e.mean == pytest.approx(2.0) and e.lo == pytest.approx(2.0) and e.hi == pytest.approx(2.0)
    assert e.sd == pytest.approx(0.0, abs=1e-12)
    num, den = np.array([2.2, 3.9, 6.6]), np.array([1.0, 2.0, 3.0])
    r = ratio_estimate(num, den)
    log = mean_ci(np.log(num / den))
    assert r.mean == pytest.approx(math.exp(log.mean)) and r.lo == pytest.approx(math.exp(log.lo))
    assert r.lo < r.mean < r.hi
    with pytest.raises(ValueError, match="den"):
        ratio_estimate([1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="num"):
        ratio_estimate([-1.0, 2.0], [1.0, 1.0])


def test_bootstrap_deterministic_and_contains_mean():
    x = np.random.default_rng(1).normal(5.0, 2.0, size=40)
    a, b = bootstrap_ci(x, n_boot=500, seed=3), bootstrap_ci(x, n_boot=500, seed=3)
    assert a == b
    assert bootstrap_ci(x, n_boot=500, seed=4) != a
    assert a.mean == pytest.approx(x.mean()) and a.lo < x.mean() < a.hi and a.n == 40
    # the bootstrap SE of a mean is about sd/sqrt(n)
    assert a.sd == pytest.approx(x.std(ddof=1) / math.sqrt(40), rel=0.2)
    med = bootstrap_ci(x, statistic=np.median, n_boot=300)
    assert med.mean == pytest.approx(np.median(x)) and med.lo <= med.mean <= med.hi


def test_replicate_interval_percentiles():
    r = replicate_interval(np.arange(101, dtype=float), level=0.9)
    assert r.lo == pytest.approx(5.0) and r.hi == pytest.approx(95.0)
    assert (r.mean, r.n) == (50.0, 101)


@pytest.mark.parametrize("bad", [[1.0, float("nan"), 2.0], [1.0, float("inf")], [], [[1.0, 2.0]], ["x"]])
def test_bad_values_name_the_argument(bad):
    with pytest.raises(ValueError, match="values"):
        mean_ci(bad)
    with pytest.raises(ValueError, match="values"):
        bootstrap_ci(bad)


def test_bad_pairs_and_level_name_the_argument():
    with pytest.raises(ValueError, match="b"):
        paired_difference([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], n_boot=1)


# ----------------------------------------------------------------------------- arrays, power, Holm

def test_t_sf_matches_the_scalar_cdf_in_both_tails():
    t = np.array([-40.0, -6.0, -2.26, -0.3, 0.0, 0.7, 2.0, 5.0, 40.0])
    for df in (1, 2, 4.5, 9, 30, 1e6):
        ref = np.array([1.0 - t_cdf(v, df) for v in t])
        got = t_sf(t, df)
        assert np.allclose(got, ref, atol=1e-14)
    # the far upper tail keeps relative precision (no 1 - cdf cancellation): for df = 2,
    # P(T > t) = 1 / (s (s + t)) with s = sqrt(t² + 2)
    for t2 in (3.0, 1e2, 1e4):
        s = math.sqrt(t2 * t2 + 2)
        assert t_sf(t2, 2) == pytest.approx(1 / (s * (s + t2)), rel=1e-10)
    # symmetry and the closed form for df = 1 (Cauchy): P(T > t) = 1/2 - atan(t)/pi, even far out
    assert np.allclose(t_sf(t, 3) + t_sf(-t, 3), 1.0)
    assert t_sf(1e6, 1) == pytest.approx(0.5 - math.atan(1e6) / math.pi, rel=1e-9)
    assert np.isnan(t_sf(np.nan, 3)) and t_sf(np.inf, 3) == 0.0 and t_sf(-np.inf, 3) == 1.0
    assert t_sf([[0.5, 1.0]], [[3.0], [math.inf]]).shape == (2, 2)


def _simulated_t(df: int, ncp: float, n: int = 200_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) + ncp) / np.sqrt(rng.chisquare(df, n) / df)


def test_noncentral_t_cdf_against_simulation_and_limits():
    for df, ncp in ((2, 1.0), (9, 1.5), (29, -0.7)):
        sims = _simulated_t(df, ncp)
        for t in (-1.0, 0.0, 1.0, 2.5):
            assert nct_cdf(t, df, ncp) == pytest.approx((sims <= t).mean(), abs=0.004)
    # ncp = 0 is Student's t; df = inf is the normal shifted by ncp
    for t in (-2.0, 0.3, 1.8):
        assert nct_cdf(t, 7, 0.0) == pytest.approx(t_cdf(t, 7), abs=1e-9)
        assert nct_cdf(t, math.inf, 1.0) == pytest.approx(NormalDist().cdf(t - 1.0), abs=1e-12)


def test_power_and_mde():
    # one-sample t, n = 10, effect 1 SD, two-sided 5 %: 0.8031 (R's power.t.test gives 0.8030962)
    assert t_power(1.0 * math.sqrt(10), 9, 0.025) == pytest.approx(0.8030962, abs=1e-6)
    sims = _simulated_t(9, 1.0 * math.sqrt(10), seed=3)
    assert t_power(math.sqrt(10), 9, 0.025) == pytest.approx((sims > t_quantile(0.975, 9)).mean(), abs=0.004)
    assert t_power(0.0, 9, 0.025) == pytest.approx(0.025, abs=1e-9)  # size at no effect
    # the MDE in standard errors: z_0.975 + z_0.8 in the normal limit, larger with few seeds
    assert mde_shift(math.inf) == pytest.approx(normal_quantile(0.975) + normal_quantile(0.8), abs=1e-6)
    assert t_power(mde_shift(9), 9, 0.025) == pytest.approx(0.8, abs=1e-6)
    assert mde_shift(2) > mde_shift(9) > mde_shift(math.inf)


def test_tost_power_against_simulation():
    rng = np.random.default_rng(5)
    n, margin = 10, 0.9                         # margin in SD units of one value
    x = rng.standard_normal((100_000, n))
    m, se = x.mean(1), x.std(1, ddof=1) / math.sqrt(n)
    c = t_quantile(0.95, n - 1)
    rate = ((m - c * se > -margin) & (m + c * se < margin)).mean()
    assert tost_power(margin * math.sqrt(n), n - 1, 0.05) == pytest.approx(rate, abs=0.005)
    assert tost_power(0.5, 9, 0.05) < 1e-4       # a margin narrower than the interval: almost never


def test_holm_hand_worked():
    # sorted 0.005, 0.01, 0.03, 0.04 over m = 4: 0.02, 0.03, 0.06, max(0.04, 0.06) = 0.06
    adj = holm([0.01, 0.04, 0.03, float("nan"), 0.005])
    assert np.allclose(adj[[0, 1, 2, 4]], [0.03, 0.06, 0.06, 0.02]) and np.isnan(adj[3])
    assert holm([0.9, 0.6]).tolist() == [1.0, 1.0]
    assert holm([0.02]).tolist() == [0.02]     # one test: unadjusted
    assert holm([]).size == 0
    with pytest.raises(ValueError, match="1-D"):
        holm([[0.1]])


def test_tdist_bounds_and_p_values_agree():
    x = np.array([0.31, 0.52, 0.12, 0.44, 0.25])
    d = TDist.of(x)
    e = mean_ci(x)
    assert (d.n, d.df) == (5, 4.0)
    assert float(d.lower(0.025)) == pytest.approx(e.lo) and float(d.upper(0.025)) == pytest.approx(e.hi)
    # p_greater(b) < alpha exactly when the lower bound at alpha is above b
    for b in (0.0, 0.1, float(d.lower(0.025)) - 1e-9, float(d.lower(0.025)) + 1e-9):
        assert (d.p_greater(b) < 0.025) == (d.lower(0.025) > b)
    assert float(d.p_greater(0.0)) + float(d.p_less(0.0)) == pytest.approx(1.0)
    assert d.mde() == pytest.approx(mde_shift(4) * x.std(ddof=1) / math.sqrt(5))
    one = TDist.of([0.7])
    assert np.isnan(one.p_greater(0.0)) and np.isnan(one.lower(0.025)) and math.isnan(one.power(1.0, 0.025))
    many = TDist.of(np.ones((3, 4, 6)))
    assert many.mean.shape == (3, 4)
    with pytest.raises(ValueError, match="NaN"):
        TDist.of([1.0, float("nan")])


def test_replicates_percentiles_and_p_values():
    reps = np.arange(1, 1000, dtype=float) / 100.0  # 0.01 .. 9.99
    r = Replicates(np.asarray(5.0), reps, n=200)
    assert float(r.lower(0.025)) == pytest.approx(np.quantile(reps, 0.025))
    assert float(r.p_greater(0.5)) == pytest.approx((1 + 50) / 1000)  # 50 replicates <= 0.5
    assert float(r.p_less(9.5)) == pytest.approx((1 + 50) / 1000)
    assert r.df == math.inf and r.mde() == pytest.approx(2.8016 * reps.std(ddof=1), rel=1e-4)


def test_maxmin_hand_worked():
    # two arms x three candidates of known t effects, n = 5 (df 4); the data favour candidate 1
    mean = np.array([[0.2, 0.9, 0.1], [0.5, 0.6, 0.8]])
    se = np.full((2, 3), 0.1)
    mm = MaxMin(TDist(mean, se, 5))
    assert float(mm.mean) == pytest.approx(0.6)  # max_k min_a: candidate 1, arm 1
    assert mm.binding() == (1, 1)
    q_lo = t_quantile(1 - 0.025 / 3, 4)            # Bonferroni over the 3 candidates
    q_hi = t_quantile(1 - 0.025 / 2, 4)            # over the 2 arms
    assert float(mm.lower(0.025)) == pytest.approx(0.6 - q_lo * 0.1)
    assert float(mm.upper(0.025)) == pytest.approx(0.6 + q_hi * 0.1)
    p = 3 * t_sf(0.6 / 0.1, 4)                      # candidate 1: the larger of its arms' p, x3
    assert float(mm.p_greater(0.0)) == pytest.approx(p)
    assert (mm.p_greater(0.0) < 0.025) == (mm.lower(0.025) > 0)
    assert (mm.p_less(0.7) < 0.025) == (mm.upper(0.025) < 0.7)


# ----------------------------------------------------------------------------- independent references

CLAIMS_CSV = Path(__file__).resolve().parents[2] / "figures" / "claims_table.csv"
PILOT_CSV = CLAIMS_CSV.with_name("pilot_sd.csv")


def _sd_ratio_density(df: float, top: float, n: int = 100_001) -> tuple[np.ndarray, np.ndarray]:
    """S = sample SD / true SD (chi(df) / sqrt(df)) on a grid over [0, top] and its density, by hand."""
    s = np.linspace(0.0, top, n)
    u = s * math.sqrt(df)
    f = np.zeros(n)
    f[1:] = np.exp((df - 1) * np.log(u[1:]) - u[1:] ** 2 / 2 - (df / 2 - 1) * math.log(2)
                   - math.lgamma(df / 2))
    f[0] = math.sqrt(2 / math.pi) if df == 1 else 0.0
    return s, f * math.sqrt(df)


def test_power_against_a_quadrature_over_the_sample_sd():
    # P(T > c) = E[Φ(shift - c·S)]; TOST: E[2Φ(m - c·S) - 1] over S < m / c (trapezoid on a grid)
    for df in (1, 4, 29):
        for alpha in (0.001, 0.025):
            c = t_quantile(1 - alpha, df)
            for shift in (0.0, 1.5, 4.0):   # Φ(shift - c·S) is 0 beyond S = (shift + 40) / c
                s, f = _sd_ratio_density(df, min(1 + 40 / math.sqrt(df), (shift + 40) / c))
                ref = np.trapezoid(ndtr(shift - c * s) * f, s)
                assert t_power(shift, df, alpha) == pytest.approx(ref, abs=1e-9)
                assert nct_cdf(c, df, shift) == pytest.approx(1 - ref, abs=1e-9)
            for margin in (0.5, 2.0, 5.0):
                s, f = _sd_ratio_density(df, margin / c)
                ref = np.trapezoid((2 * ndtr(margin - c * s) - 1) * f, s)
                assert tost_power(margin, df, alpha) == pytest.approx(ref, abs=1e-9)


def test_noncentral_t_far_tails_and_huge_shifts():
    # the far lower tail (scipy's own nct.cdf gives NaN at some of these) and |ncp| beyond ~3e9
    # (NaN from scipy's nct.sf): probabilities, not NaN
    lower = nct_cdf(np.array([1.0, 1.64, -40.0]), 5, np.array([38.36718178112645, 40.8816882439129, 9.5]))
    assert np.all((lower >= 0) & (lower < 1e-15))
    assert t_power(np.array([5.4e15, -5.4e15, np.inf, np.nan]), 9, 0.025).tolist()[:3] == [1.0, 0.0, 1.0]
    assert np.isnan(t_power(np.nan, 9, 0.025)) and np.isnan(nct_cdf(1.0, 9, np.nan))
    assert tost_power(np.array([np.inf, -np.inf, -1.0]), 9, 0.05).tolist() == [1.0, 0.0, 0.0]


def test_t_quantile_deep_tails():
    for p in (1e-20, 1e-100):      # closed forms for df = 2 and df = 1 (the Cauchy)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)
        assert t_quantile(p, 1) == pytest.approx(-1 / math.tan(math.pi * p), rel=1e-12)
    for p, df in ((1e-300, 3), (1e-60, 0.3), (1e-150, 2.5)):   # beyond scipy's range: an error,
        try:                                                   # never a wrong number
            q = t_quantile(p, df)
        except ValueError as err:
            assert "overflows" in str(err)
        else:
            assert t_cdf(q, df) == pytest.approx(p, rel=1e-8)


def test_holm_equals_statsmodels():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0, 0.1, 6), [0.02, 0.02, 1.5, 0.0]])   # ties, > 1, 0
    np.testing.assert_array_equal(holm(p), multipletests(p, method="holm")[1])
    # NaN/inf (no test) entries stay NaN; the finite ones are a family of their own size
    p = np.array([0.01, np.nan, 0.04, 0.03, np.inf, 0.005, 0.04])
    fin = np.isfinite(p)
    adj = holm(p)
    assert np.isnan(adj[~fin]).all()
    np.testing.assert_array_equal(adj[fin], multipletests(p[fin], method="holm")[1])


def test_committed_claims_table_follows_from_its_own_numbers():
    """figures/claims_table.csv is not recomputed here (its inputs are the training runs and the
    teacher's bootstrap), but its Holm columns follow from its raw p-values, and every paired-t
    row's p-values, 90 % bounds and MDE from its estimate, 95 % interval, n and SESOI, and its
    power from the SESOI at the SD its ``power_basis`` names (the pilot's, or the observed)."""
    table = pd.read_csv(CLAIMS_CSV)
    pilot = pd.read_csv(PILOT_CSV).set_index(["claim", "variant"])["sd"]
    for _, family in table.groupby(["claim", "kind", "family"], sort=False):   # primaries apart
        for slot in ("support", "opposite", "sesoi"):
            np.testing.assert_allclose(holm(family[f"p_{slot}"].to_numpy(float)),
                                       family[f"p_{slot}_holm"].to_numpy(float), rtol=1e-12, atol=0)
    rows = table[table["rule"].str.contains(r"; paired t over \d+ seed\(s\); p-values")
                 & (table["scale"] == "linear")]
    assert len(rows) >= 20
    for r in rows.itertuples():
        df, est, d = r.n - 1, r.estimate, r.sesoi
        se = (r.hi95 - r.lo95) / (2 * t_quantile(0.975, df))
        q90 = t_quantile(0.95, df)
        want = {"lo90": est - q90 * se, "hi90": est + q90 * se, "mde": mde_shift(df) * se}
        # power at the replicate SD fixed before the data (figures/pilot_sd.csv) where the row
        # says so, else at the observed spread; everything else at the observed spread
        planned = r.power_basis.startswith("planned SD")
        assert planned == ((r.claim, r.variant) in pilot.index), (r.variant, r.power_basis)
        se_power = pilot[(r.claim, r.variant)] / math.sqrt(r.n) if planned else se
        if r.kind == "directional":
            want |= {"p_support": t_sf(est / se, df), "p_opposite": t_sf(-est / se, df),
                     "p_sesoi": t_sf((d - est) / se, df)}
            power = t_power(d / se_power, df, 0.025)
        elif r.kind == "equivalence":
            want |= {"p_support": max(t_sf((est + d) / se, df), t_sf((d - est) / se, df)),
                     "p_opposite": min(t_sf((est - d) / se, df), t_sf((-d - est) / se, df))}
            power = tost_power(d / se_power, df, 0.05)
        else:
            want |= {"p_support": t_sf((d - est) / se, df), "p_opposite": t_sf((est - d) / se, df)}
            power = t_power(d / se_power, df, 0.05)
        for col, value in want.items():
            assert getattr(r, col) == pytest.approx(float(value), rel=1e-9, abs=1e-12), (r.variant, col)
        assert r.power == pytest.approx(float(power), abs=1e-9), (r.variant, "power")
