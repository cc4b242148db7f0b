"""Small-sample statistics for the claims: t intervals over seeds, paired differences, ratios, bootstrap.

numpy only (scipy is not a dependency): the Student-t quantile is computed here by inverting a
t CDF built on the regularised incomplete beta function (continued fraction, both tails computed
directly so neither loses precision to cancellation).

Every estimator returns an :class:`Estimate`. With one value (one seed) the interval is undefined
and ``lo``/``hi`` are NaN: the kit never pretends a single run has error bars. Inputs are 1-D
sequences of finite numbers; anything else raises ``ValueError`` naming the argument.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

_CF_EPS = 1e-15        # relative convergence of the continued fraction
_CF_TINY = 1e-300      # Lentz's guard against division by zero
_CF_MAX_ITER = 20_000  # enough for df up to ~1e8 (iterations grow like sqrt(df))
_NORMAL_DF = 1e8       # above this many degrees of freedom the t quantile is the normal one (< 1e-8 apart)


# ----------------------------------------------------------------------------- the estimate

@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval.

    ``mean``: the estimate (a mean, a mean difference, a geometric-mean ratio, or a statistic).
    ``lo``, ``hi``: interval bounds at ``level``; NaN when undefined (n == 1).
    ``n``: number of independent values behind it (seeds, pairs, images, replicates).
    ``sd``: their sample standard deviation (ddof=1; for ``ratio_estimate`` on the log scale; for
    the bootstrap the standard deviation of the replicates, i.e. the bootstrap standard error);
    NaN when n == 1.
    """

    mean: float
    lo: float
    hi: float
    n: int
    sd: float
    level: float = 0.95

    @property
    def defined(self) -> bool:
        """True when both interval bounds are finite numbers."""
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def half_width(self) -> float:
        """(hi - lo) / 2; NaN when the interval is undefined."""
        return (self.hi - self.lo) / 2 if self.defined else float("nan")

    def contains(self, value: float) -> bool:
        """True when lo <= value <= hi (False for an undefined interval)."""
        return self.defined and self.lo <= value <= self.hi

    def format(self, unit: str = "", digits: int = 2) -> str:
        """e.g. ``"-0.31 [-0.52, -0.10] (n=3)"``; with ``unit="pt"``: ``"-0.31 [-0.52, -0.10] pt (n=3)"``.

        An undefined interval prints as ``[no CI]``.
        """
        u = f" {unit}" if unit else ""
        ci = f"[{self.lo:.{digits}f}, {self.hi:.{digits}f}]" if self.defined else "[no CI]"
        return f"{self.mean:.{digits}f} {ci}{u} (n={self.n})"

    def __str__(self) -> str:
        return self.format()


# ----------------------------------------------------------------------------- Student t

def _betainc_cf(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz); converges fast for x < (a+1)/(a+b+2).

    ``y`` is 1 - x, passed separately so that the caller computes it without cancellation.
    """
    if x <= 0.0:
        return 0.0
    log_front = (a * math.log(x) + b * math.log(y)
                 + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))
    # K = 1 / (1 + d1 / (1 + d2 / (1 + ...))), evaluated as b0 + a1/(b1 + a2/(b2 + ...)), b0 = 0.
    f = _CF_TINY
    c, d = f, 0.0
    for k in range(1, _CF_MAX_ITER + 1):
        if k == 1:
            num = 1.0
        else:
            j = k - 1  # index of d_j
            m = j // 2
            if j % 2:   # d_{2m+1}
                num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            else:       # d_{2m}
                num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _CF_TINY else _CF_TINY
        step = c * d
        f *= step
        if abs(step - 1.0) < _CF_EPS:
            break
    return math.exp(log_front) * f / a


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularised incomplete beta I_x(a, b) with y = 1 - x given separately."""
    if x < (a + 1.0) / (a + b + 2.0):
        return _betainc_cf(a, b, x, y)
    return 1.0 - _betainc_cf(b, a, y, x)


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: 0.5 · I_{df/(df+t²)}(df/2, 1/2)."""
    t2 = t * t
    return 0.5 * _betainc(0.5 * df, 0.5, df / (df + t2), t2 / (df + t2))


def t_cdf(t: float, df: float) -> float:
    """Student-t CDF P(T <= t) with ``df`` > 0 degrees of freedom (math.inf: the normal)."""
    _check_df(df)
    if math.isinf(df):
        return NormalDist().cdf(t)
    tail = _t_upper_tail(abs(t), df)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile: the t with P(T <= t) = p, for 0 < p < 1 and df > 0 (may be non-integer).

    Bisection on the upper tail, which is computed directly (no 1 - CDF cancellation), to a
    relative precision of about 1e-13. ``df`` = math.inf, or above 1e8, gives the normal quantile.
    """
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must lie in (0, 1), got {p}")
    _check_df(df)
    if math.isinf(df) or df > _NORMAL_DF:
        return NormalDist().inv_cdf(p)
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    target = 1.0 - p  # wanted upper-tail probability, < 0.5
    lo, hi = 0.0, 1.0
    while _t_upper_tail(hi, df) > target:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            raise ValueError(f"t_quantile: quantile overflows for p={p}, df={df}")
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi) or hi - lo <= 1e-14 * hi:
            break
        if _t_upper_tail(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _check_df(df: float) -> None:
    if not (isinstance(df, (int, float, np.integer, np.floating)) and df > 0) or math.isnan(df):
        raise ValueError(f"df must be a number > 0, got {df!r}")


# ----------------------------------------------------------------------------- input checks

def _vector(values: Sequence[float], name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array of finite numbers, at least one; else ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers ({err})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty; need at least one value")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} non-finite value(s) (NaN/inf) at index "
                         f"{np.flatnonzero(bad).tolist()}")
    return arr


def _check_level(level: float) -> float:
    if not (isinstance(level, (int, float, np.floating)) and 0.0 < level < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    return float(level)


def _paired(a: Sequence[float], b: Sequence[float], names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    x, y = _vector(a, names[0]), _vector(b, names[1])
    if x.size != y.size:
        raise ValueError(f"paired values need equal lengths: {names[0]} has {x.size}, "
                         f"{names[1]} has {y.size}")
    return x, y


# ----------------------------------------------------------------------------- estimators

def mean_ci(values: Sequence[float], level: float = 0.95, *, name: str = "values") -> Estimate:
    """Mean of ``values`` [n] with the two-sided Student-t interval mean ± t(1-(1-level)/2, n-1)·sd/√n.

    n == 1: ``lo``, ``hi`` and ``sd`` are NaN (no spread can be measured from one value).
    """
    level = _check_level(level)
    x = _vector(values, name)
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, float("nan"), float("nan"), 1, float("nan"), level)
    sd = float(x.std(ddof=1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n, sd, level)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95, *,
                      names: tuple[str, str] = ("a", "b")) -> Estimate:
    """Mean of a[i] - b[i] over pairs (seeds), with its t interval; a and b are [n], same n."""
    x, y = _paired(a, b, names)
    return mean_ci(x - y, level, name=f"{names[0]} - {names[1]}")


def ratio_estimate(num: Sequence[float], den: Sequence[float], level: float = 0.95, *,
                   names: tuple[str, str] = ("num", "den")) -> Estimate:
    """Geometric-mean ratio of paired num[i] / den[i] (all > 0), with a back-transformed t interval.

    The t interval is taken on log(num / den) and exponentiated: ``mean`` = exp(mean log ratio),
    ``lo``/``hi`` = exp of its bounds, ``sd`` = sample SD of the log ratios (natural log).
    """
    level = _check_level(level)
    x, y = _paired(num, den, names)
    for arr, nm in ((x, names[0]), (y, names[1])):
        if (arr <= 0).any():
            raise ValueError(f"{nm}: ratio_estimate needs positive values, got "
                             f"{arr[arr <= 0].tolist()}")
    log_est = mean_ci(np.log(x) - np.log(y), level, name=f"log({names[0]}/{names[1]})")
    return Estimate(math.exp(log_est.mean), math.exp(log_est.lo), math.exp(log_est.hi),
                    log_est.n, log_est.sd, level)


def bootstrap_ci(values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean,
                 level: float = 0.95, n_boot: int = 2000, seed: int = 0, *,
                 name: str = "values") -> Estimate:
    """Percentile bootstrap interval of ``statistic`` over ``values`` [n] (e.g. per-image values).

    Resamples the n values with replacement ``n_boot`` times from ``numpy.random.default_rng(seed)``
    (deterministic for a seed). ``mean`` = statistic(values) on the original sample; ``lo``/``hi``
    = the (1-level)/2 and (1+level)/2 quantiles of the replicates; ``sd`` = their SD (the bootstrap
    standard error). n == 1: NaN bounds (resampling one value measures nothing).
    """
    level = _check_level(level)
    x = _vector(values, name)
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 2):
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    point = float(statistic(x))
    n = int(x.size)
    if n == 1:
        return Estimate(point, float("nan"), float("nan"), 1, float("nan"), level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(n_boot), n))  # [n_boot, n]
    reps = np.fromiter((float(statistic(x[row])) for row in idx), dtype=np.float64, count=int(n_boot))
    return replicate_interval(reps, level, name="bootstrap replicates", point=point, n=n)


def replicate_interval(replicates: Sequence[float], level: float = 0.95, *,
                       name: str = "replicates", point: float | None = None,
                       n: int | None = None) -> Estimate:
    """Percentile interval from replicates already drawn (e.g. rows of a bootstrapped profile).

    ``mean`` = ``point`` if given, else the replicates' mean; ``lo``/``hi`` = their (1-level)/2
    and (1+level)/2 quantiles (numpy's linear interpolation); ``sd`` = their SD (the standard
    error of the statistic); ``n`` = the sample size behind them if given, else the number of
    replicates. Fewer than 2 replicates: NaN bounds.
    """
    level = _check_level(level)
    r = _vector(replicates, name)
    mean = float(r.mean()) if point is None else float(point)
    count = int(r.size) if n is None else int(n)
    if r.size < 2:
        return Estimate(mean, float("nan"), float("nan"), count, float("nan"), level)
    lo, hi = np.quantile(r, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return Estimate(mean, float(lo), float(hi), count, float(r.std(ddof=1)), level)


__all__ = ["Estimate", "t_cdf", "t_quantile", "mean_ci", "paired_difference", "ratio_estimate",
           "bootstrap_ci", "replicate_interval"]
