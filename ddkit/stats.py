"""Small-sample statistics for the claims: t intervals over seeds, paired differences, ratios,
bootstrap, one-sided tests, Holm's correction, power and minimum detectable effects.

numpy only (scipy is not a dependency): the Student-t quantile is computed here by inverting a
t CDF built on the regularised incomplete beta function (continued fraction, both tails computed
directly so neither loses precision to cancellation); ``t_sf`` evaluates the same continued
fraction on whole arrays, and the noncentral t (for power) is a quadrature over the chi
distribution of the sample SD.

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


# ----------------------------------------------------------------------------- arrays: t tails, tests

_lgamma = np.vectorize(math.lgamma, otypes=[float])
_erfc = np.vectorize(math.erfc, otypes=[float])


def normal_cdf(z) -> np.ndarray:
    """Standard normal CDF, elementwise (NaN stays NaN)."""
    return 0.5 * _erfc(-np.asarray(z, dtype=np.float64) / math.sqrt(2.0))


def normal_quantile(p: float) -> float:
    """Standard normal quantile of ``p`` in (0, 1)."""
    return NormalDist().inv_cdf(float(p))


def _betainc_cf_array(a: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``_betainc_cf`` elementwise on equal-shaped 1-D arrays (modified Lentz, all elements in step)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_front = a * np.log(x) + b * np.log(y) + _lgamma(a + b) - _lgamma(a) - _lgamma(b)
    f = np.full(x.shape, _CF_TINY)
    c, d = f.copy(), np.zeros(x.shape)
    for k in range(1, _CF_MAX_ITER + 1):
        if k == 1:
            num = np.ones(x.shape)
        else:
            j = k - 1
            m = j // 2
            if j % 2:
                num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            else:
                num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / np.where(np.abs(d) > _CF_TINY, d, _CF_TINY)
        c = 1.0 + num / c
        c = np.where(np.abs(c) > _CF_TINY, c, _CF_TINY)
        step = c * d
        f = f * step
        if np.all((np.abs(step - 1.0) < _CF_EPS) | ~np.isfinite(step)):
            break
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.exp(log_front) * f / a
    return np.where(x <= 0.0, 0.0, out)


def t_sf(t, df) -> np.ndarray:
    """Upper tail P(T > t) of Student's t, elementwise over broadcast ``t`` and ``df`` (> 0;
    math.inf or above 1e8: the normal). NaN in either gives NaN. Agrees with ``1 - t_cdf`` but
    keeps precision in both tails."""
    t, df = np.broadcast_arrays(np.asarray(t, dtype=np.float64), np.asarray(df, dtype=np.float64))
    shape = t.shape
    t, df = t.ravel(), df.ravel()
    out = np.full(t.shape, np.nan)
    normal = (df > _NORMAL_DF) & ~np.isnan(t)
    out[normal] = 0.5 * _erfc(t[normal] / math.sqrt(2.0))
    ok = ~normal & np.isfinite(df) & (df > 0) & ~np.isnan(t)
    if ok.any():
        tt, nu = t[ok], df[ok]
        t2 = tt * tt
        with np.errstate(invalid="ignore"):
            x = np.where(np.isinf(t2), 0.0, nu / (nu + t2))
            y = np.where(np.isinf(t2), 1.0, t2 / (nu + t2))
        a, b = 0.5 * nu, np.full(nu.shape, 0.5)
        direct = x < (a + 1.0) / (a + b + 2.0)
        inc = np.empty(x.shape)
        if direct.any():
            inc[direct] = _betainc_cf_array(a[direct], b[direct], x[direct], y[direct])
        if (~direct).any():
            r = ~direct
            inc[r] = 1.0 - _betainc_cf_array(b[r], a[r], y[r], x[r])
        tail = 0.5 * inc  # P(T > |t|)
        out[ok] = np.where(tt >= 0, tail, 1.0 - tail)
    return out.reshape(shape)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family ``p`` [k]; NaN entries (no test, e.g. one
    seed) are left NaN and do not count in the family. adj_(i) = max_{j<=i} min(1, (m-j+1) p_(j))
    over the m finite p-values sorted ascending: reject where adj < alpha controls the family-wise
    error at alpha."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"holm: expected a 1-D array of p-values, got shape {p.shape}")
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    m = q.size
    if m:
        order = np.argsort(q, kind="stable")
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * q[order]))
        sorted_back = np.empty(m)
        sorted_back[order] = adj
        out[ok] = sorted_back
    return out


# ----------------------------------------------------------------------------- power

_QUAD_POINTS = 2001  # Simpson nodes over the chi distribution of the sample SD


def _chi_quadrature(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u and weights w (summing to 1) for E[g(U)], U ~ chi with ``df`` degrees of freedom
    (U/sqrt(df) = sample SD / true SD). Simpson's rule over sqrt(df) ± 12 (clipped at 0)."""
    centre = math.sqrt(df)
    u = np.linspace(max(0.0, centre - 12.0), centre + 12.0, _QUAD_POINTS)
    with np.errstate(divide="ignore"):
        log_u = np.log(u)
    log_pdf = (np.where(u > 0, (df - 1.0) * log_u, 0.0 if df == 1 else -np.inf)
               - u * u / 2.0 - ((df / 2.0 - 1.0) * math.log(2.0) + math.lgamma(df / 2.0)))
    simpson = np.ones(_QUAD_POINTS)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    w = np.exp(log_pdf) * simpson
    return u, w / w.sum()


def nct_cdf(t, df: float, ncp) -> np.ndarray:
    """Noncentral t CDF P(T <= t), T = (Z + ncp) / sqrt(V / df), elementwise over broadcast ``t``
    and ``ncp``; ``df`` a scalar > 0 (math.inf: the normal, Φ(t - ncp)). Quadrature over the chi
    distribution: E_U[Φ(t·U/sqrt(df) - ncp)]."""
    _check_df(df)
    t, ncp = np.broadcast_arrays(np.asarray(t, dtype=np.float64), np.asarray(ncp, dtype=np.float64))
    if math.isinf(df) or df > _NORMAL_DF:
        return normal_cdf(t - ncp)
    u, w = _chi_quadrature(df)
    values = normal_cdf(t[..., None] * (u / math.sqrt(df)) - ncp[..., None])  # [..., nodes]
    return values @ w


def _critical(alpha: float, df: float) -> float:
    return normal_quantile(1 - alpha) if math.isinf(df) or df > _NORMAL_DF else t_quantile(1 - alpha, df)


def t_power(shift, df: float, alpha: float) -> np.ndarray:
    """Power of the one-sided t test of H0: e <= 0 at level ``alpha`` when the true effect is
    ``shift`` standard errors (the SD taken as known for the noncentrality, estimated in the test):
    P(T > t_{1-alpha, df}) with noncentrality ``shift``. ``df`` = math.inf: the z test."""
    return 1.0 - nct_cdf(_critical(alpha, df), df, shift)


def tost_power(margin, df: float, alpha: float) -> np.ndarray:
    """Power of the two one-sided tests (each at ``alpha``) of |e| >= ``margin`` (in standard
    errors) when the true effect is 0: P(the 1 - 2·alpha interval lies inside ±margin)."""
    crit = _critical(alpha, df)
    margin = np.asarray(margin, dtype=np.float64)
    if math.isinf(df) or df > _NORMAL_DF:
        return np.clip(2 * normal_cdf(margin - crit) - 1, 0, 1)
    u, w = _chi_quadrature(df)
    half = crit * u / math.sqrt(df)  # [nodes]: the interval's half-width in true SE units
    inside = normal_cdf(margin[..., None] - half) - normal_cdf(half - margin[..., None])
    return np.clip(inside, 0, None) @ w


def mde_shift(df: float, alpha: float = 0.025, power: float = 0.8) -> float:
    """The effect (in standard errors) that the one-sided t test at ``alpha`` detects with
    probability ``power`` (alpha = 0.025: the two-sided 5 % test, ignoring its other tail)."""
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power!r}")
    lo, hi = 0.0, 1.0
    while float(t_power(hi, df, alpha)) < power:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(t_power(mid, df, alpha)) < power:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- sampling distributions
# Each describes how an effect estimate varies, for one problem or for many at once (leading axes
# broadcast: the calibration tests judge thousands of simulated studies in one call). Their
# one-sided p-values and bounds are consistent: p_greater(d) < alpha exactly when lower(alpha) > d.


@dataclass(frozen=True)
class TDist:
    """A mean of ``n`` independent values (seeds, or paired differences over seeds):
    (mean - e) / se ~ Student t with n - 1 degrees of freedom. ``mean``, ``se``: arrays [...];
    n == 1 gives NaN se, p-values, bounds and power."""

    mean: np.ndarray
    se: np.ndarray
    n: int

    @classmethod
    def of(cls, values) -> "TDist":
        """From ``values`` [..., n] (the last axis: the independent values)."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim < 1 or v.shape[-1] < 1:
            raise ValueError(f"TDist.of: need at least one value on the last axis, got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("TDist.of: values contain NaN/inf")
        n = int(v.shape[-1])
        se = v.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else np.full(v.shape[:-1], np.nan)
        return cls(v.mean(axis=-1), np.asarray(se, dtype=np.float64), n)

    @property
    def df(self) -> float:
        return float(self.n - 1) if self.n > 1 else math.nan

    def _q(self, alpha: float) -> float:
        return t_quantile(1 - alpha, self.df) if self.n > 1 else math.nan

    def p_greater(self, d) -> np.ndarray:
        """One-sided p of H0: e <= d (small when the effect is above d)."""
        if self.n < 2:
            return np.full(np.shape(self.mean), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):  # se = 0: t = ±inf (or NaN at 0/0)
            return t_sf((self.mean - d) / self.se, self.df)

    def p_less(self, d) -> np.ndarray:
        """One-sided p of H0: e >= d (small when the effect is below d)."""
        if self.n < 2:
            return np.full(np.shape(self.mean), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return t_sf((d - self.mean) / self.se, self.df)

    def lower(self, alpha: float) -> np.ndarray:
        """One-sided lower confidence bound at level 1 - alpha."""
        return self.mean - self._q(alpha) * self.se

    def upper(self, alpha: float) -> np.ndarray:
        """One-sided upper confidence bound at level 1 - alpha."""
        return self.mean + self._q(alpha) * self.se

    def power(self, effect: float, alpha: float) -> float:
        """Power of the one-sided test of e <= 0 at ``alpha`` when the true effect is ``effect``,
        taking the observed SD as the true one."""
        if self.n < 2 or not np.isfinite(self.se) or self.se <= 0:
            return math.nan
        return float(t_power(effect / self.se, self.df, alpha))

    def power_equivalence(self, margin: float, alpha: float) -> float:
        """Power of TOST (each side at ``alpha``) with margin ±``margin`` at a true effect of 0."""
        if self.n < 2 or not np.isfinite(self.se) or self.se <= 0:
            return math.nan
        return float(tost_power(margin / self.se, self.df, alpha))

    def mde(self, alpha: float = 0.025, power: float = 0.8) -> float:
        """Smallest effect the one-sided test at ``alpha`` detects with probability ``power``."""
        if self.n < 2 or not np.isfinite(self.se):
            return math.nan
        return mde_shift(self.df, alpha, power) * float(self.se)

    def item(self, index) -> "TDist":
        return TDist(np.asarray(self.mean)[index], np.asarray(self.se)[index], self.n)


@dataclass(frozen=True)
class Replicates:
    """Bootstrap replicates of an estimate. ``point`` [...]: the estimate on the full sample;
    ``reps`` [..., B]; ``n``: the resampled units (images). Percentile bounds; percentile p-values
    (1 + #replicates on the null side) / (B + 1); power and MDE from the normal approximation with
    the bootstrap standard error."""

    point: np.ndarray
    reps: np.ndarray
    n: int

    @property
    def mean(self) -> np.ndarray:
        return self.point

    @property
    def se(self) -> np.ndarray:
        return np.asarray(self.reps, dtype=np.float64).std(axis=-1, ddof=1)

    @property
    def df(self) -> float:
        return math.inf

    def _count(self, mask: np.ndarray) -> np.ndarray:
        b = self.reps.shape[-1]
        return (1.0 + mask.sum(axis=-1)) / (b + 1.0)

    def p_greater(self, d) -> np.ndarray:
        return self._count(self.reps <= np.asarray(d)[..., None])

    def p_less(self, d) -> np.ndarray:
        return self._count(self.reps >= np.asarray(d)[..., None])

    def lower(self, alpha: float) -> np.ndarray:
        return np.quantile(self.reps, alpha, axis=-1)

    def upper(self, alpha: float) -> np.ndarray:
        return np.quantile(self.reps, 1 - alpha, axis=-1)

    def power(self, effect: float, alpha: float) -> float:
        se = float(self.se)
        return float(normal_cdf(effect / se - normal_quantile(1 - alpha))) if se > 0 else math.nan

    def power_equivalence(self, margin: float, alpha: float) -> float:
        se = float(self.se)
        return float(tost_power(margin / se, math.inf, alpha)) if se > 0 else math.nan

    def mde(self, alpha: float = 0.025, power: float = 0.8) -> float:
        return (normal_quantile(1 - alpha) + normal_quantile(power)) * float(self.se)

    def item(self, index) -> "Replicates":
        return Replicates(np.asarray(self.point)[index], np.asarray(self.reps)[index], self.n)


@dataclass(frozen=True)
class MaxMin:
    """D = max over K candidates of the min over A arms of arm effects E[a, k] (e.g. the depth of a
    U: min(first - x_k, last - x_k), maximised over the interior layers k). ``arms``: a TDist or
    Replicates shaped [..., A, K].

    Valid whichever candidate the data favour (docs/design.md §8): H0: D <= d is rejected when for
    some k every arm's test rejects at alpha/K (an intersection-union test per candidate, Bonferroni
    over candidates), which is also the lower bound max_k min_a lower_{a,k}(alpha/K); H0: D >= d is
    rejected when for every k some arm's test rejects at alpha/A (the true maximiser is fixed, so
    only the arms need a correction), the upper bound max_k min_a upper_{a,k}(alpha/A).
    """

    arms: TDist | Replicates

    @property
    def shape(self) -> tuple[int, int]:
        a, k = np.shape(self.arms.mean)[-2:]
        return a, k

    @property
    def n(self) -> int:
        return self.arms.n

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.arms.mean).min(axis=-2).max(axis=-1)

    def p_greater(self, d) -> np.ndarray:
        _, k = self.shape
        p = np.asarray(self.arms.p_greater(np.asarray(d)[..., None, None]))
        return np.minimum(1.0, k * p.max(axis=-2).min(axis=-1))

    def p_less(self, d) -> np.ndarray:
        a, _ = self.shape
        p = np.asarray(self.arms.p_less(np.asarray(d)[..., None, None]))
        return np.minimum(1.0, a * p.min(axis=-2).max(axis=-1))

    def lower(self, alpha: float) -> np.ndarray:
        _, k = self.shape
        return np.asarray(self.arms.lower(alpha / k)).min(axis=-2).max(axis=-1)

    def upper(self, alpha: float) -> np.ndarray:
        a, _ = self.shape
        return np.asarray(self.arms.upper(alpha / a)).min(axis=-2).max(axis=-1)

    def binding(self) -> tuple[int, int]:
        """(arm, candidate) the point estimate rests on (one problem only)."""
        m = np.asarray(self.arms.mean)
        if m.ndim != 2:
            raise ValueError("MaxMin.binding: defined for one problem (arms shaped [A, K])")
        k = int(np.argmax(m.min(axis=0)))
        return int(np.argmin(m[:, k])), k

    @property
    def se(self) -> float:
        return float(np.asarray(self.arms.se)[self.binding()])

    @property
    def df(self) -> float:
        return self.arms.df

    def power(self, effect: float, alpha: float) -> float:
        """Approximate: the binding arm's test at alpha/K (the other arm taken as certain)."""
        return self.arms.item(self.binding()).power(effect, alpha / self.shape[1])

    def power_equivalence(self, margin: float, alpha: float) -> float:
        raise NotImplementedError("MaxMin effects are tested directionally only")

    def mde(self, alpha: float = 0.025, power: float = 0.8) -> float:
        return self.arms.item(self.binding()).mde(alpha / self.shape[1], power)


Dist = TDist | Replicates | MaxMin


__all__ = ["Estimate", "t_cdf", "t_quantile", "mean_ci", "paired_difference", "ratio_estimate",
           "bootstrap_ci", "replicate_interval", "normal_cdf", "normal_quantile", "t_sf", "holm",
           "nct_cdf", "t_power", "tost_power", "mde_shift", "TDist", "Replicates", "MaxMin", "Dist"]
