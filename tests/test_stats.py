"""ddkit.stats: t quantiles against table values, intervals against hand-computed ones, input checks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ddkit.stats import (Estimate, bootstrap_ci, mean_ci, paired_difference, ratio_estimate,
                         replicate_interval, t_cdf, t_quantile)

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
