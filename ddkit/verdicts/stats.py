"""Small-sample statistics for the claims: t intervals over seeds, paired differences, ratios,
bootstrap, one-sided tests, Holm's correction, power and minimum detectable effects.

The distributions are scipy.stats': Student's t (intervals, p-values), the normal and the
noncentral t (power). Written here, each saying why: Holm's step-down (``holm``) and the power of
two one-sided tests (``tost_power``).

Every estimator returns an :class:`Estimate`. With one value (one seed) the interval is undefined
and ``lo``/``hi`` are NaN: the kit never pretends a single run has error bars. Inputs are 1-D
sequences of finite numbers; anything else raises ``ValueError`` naming the argument.

Over 450 lines on purpose: the three sampling distributions the claims use (t over seeds,
bootstrap replicates, max-min over layers), each with its intervals, tests and power behind
one interface.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.integrate
import scipy.optimize
import scipy.stats

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

def t_cdf(t: float, df: float) -> float:
    """Student-t CDF P(T <= t) with ``df`` > 0 degrees of freedom (math.inf: the normal)."""
    _check_df(df)
    return float(scipy.stats.t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile: the t with P(T <= t) = p, for 0 < p < 1 and df > 0 (may be non-integer;
    math.inf: the normal quantile)."""
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must lie in (0, 1), got {p}")
    _check_df(df)
    q = float(scipy.stats.t.ppf(p, df))
    # scipy's quantile is wrong in the extreme tails (±inf, a wrong sign or a clamped value, e.g.
    # below p = 1e-47 at df = 0.3 or 1e-138 at df = 2.5): a round trip through its CDF refuses them
    tail = scipy.stats.t.cdf(q, df) if p < 0.5 else scipy.stats.t.sf(q, df)
    if not (math.isfinite(q) and abs(tail / min(p, 1.0 - p) - 1.0) <= 1e-8):
        raise ValueError(f"t_quantile: the quantile overflows or is beyond scipy's range for "
                         f"p={p}, df={df}")
    return q


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

def normal_cdf(z) -> np.ndarray:
    """Standard normal CDF, elementwise (NaN stays NaN)."""
    return scipy.stats.norm.cdf(np.asarray(z, dtype=np.float64))


def normal_quantile(p: float) -> float:
    """Standard normal quantile of ``p`` in (0, 1) (NaN gives NaN)."""
    p = float(p)
    if p <= 0.0 or p >= 1.0:
        raise ValueError(f"normal_quantile: p must lie in (0, 1), got {p}")
    return float(scipy.stats.norm.ppf(p))


def t_sf(t, df) -> np.ndarray:
    """Upper tail P(T > t) of Student's t, elementwise over broadcast ``t`` and ``df`` (> 0;
    math.inf: the normal). NaN in either, or df <= 0, gives NaN. Agrees with ``1 - t_cdf`` but
    keeps precision in both tails."""
    return np.asarray(scipy.stats.t.sf(np.asarray(t, dtype=np.float64),
                                       np.asarray(df, dtype=np.float64)), dtype=np.float64)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family ``p`` [k]; NaN entries (no test, e.g. one
    seed) are left NaN and do not count in the family. adj_(i) = max_{j<=i} min(1, (m-j+1) p_(j))
    over the m finite p-values sorted ascending: reject where adj < alpha controls the family-wise
    error at alpha.

    By hand: scipy has no Holm, and statsmodels' ``multipletests(method="holm")`` (which this equals,
    tests/verdicts/test_stats.py) runs ``gc.collect()`` on every call, 0.05-0.2 s, too slow for the 20 000
    simulated families of tests/verdicts/test_calibration.py; it also takes no NaN."""
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

_NCT_NAN_NCP = 1e9  # scipy's (Boost's) noncentral t returns NaN once |ncp| passes about 3e9


def _nct_sf(t, df: float, ncp) -> np.ndarray:
    """Noncentral t upper tail P(T > t), scipy's; where scipy gives NaN because |ncp| is beyond
    about 3e9, the limit, 1 (ncp > 0) or 0 (ncp < 0), which is exact there in double precision."""
    t, ncp = np.asarray(t, dtype=np.float64), np.asarray(ncp, dtype=np.float64)
    p = np.asarray(scipy.stats.nct.sf(t, df, ncp), dtype=np.float64)
    lost = np.isnan(p) & ~np.isnan(t) & (np.abs(ncp) > _NCT_NAN_NCP)
    p = np.where(lost, (ncp > 0).astype(np.float64), p)
    return p if p.ndim else p[()]


def nct_cdf(t, df: float, ncp) -> np.ndarray:
    """Noncentral t CDF P(T <= t), T = (Z + ncp) / sqrt(V / df), elementwise over broadcast ``t``
    and ``ncp``; ``df`` a scalar > 0 (math.inf: the normal, Φ(t - ncp)). NaN gives NaN.

    Evaluated as P(-T > -t), the upper tail of the reflected distribution: scipy's ``nct.cdf``
    returns NaN in parts of the far lower tail (e.g. t = 1, ncp = 38) where ``nct.sf`` does not."""
    _check_df(df)
    return _nct_sf(-np.asarray(t, dtype=np.float64), df, -np.asarray(ncp, dtype=np.float64))


def _critical(alpha: float, df: float) -> float:
    """t_{1-alpha, df}, the one-sided critical value (from the upper tail, no 1 - alpha rounding)."""
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    _check_df(df)
    return float(scipy.stats.t.isf(alpha, df))


def t_power(shift, df: float, alpha: float) -> np.ndarray:
    """Power of the one-sided t test of H0: e <= 0 at level ``alpha`` when the true effect is
    ``shift`` standard errors (the SD taken as known for the noncentrality, estimated in the test):
    P(T > t_{1-alpha, df}) with noncentrality ``shift``. ``df`` = math.inf: the z test."""
    return _nct_sf(_critical(alpha, df), df, shift)


def tost_power(margin, df: float, alpha: float) -> np.ndarray:
    """Power of the two one-sided tests (each at ``alpha`` < 0.5) of |e| >= ``margin`` (in
    standard errors) when the true effect is 0: P(the 1 - 2·alpha interval lies inside ±margin).

    By hand: neither scipy nor statsmodels has it (it is a difference of Owen's Q functions). With
    Z ~ N(0, 1) the estimate, S = sample SD / true SD ~ chi(df) / sqrt(df) and c = t_{1-alpha, df},
    it is P(|Z| + c·S < margin) = 2 ∫_0^margin φ(z) P(S < (margin - z) / c) dz, integrated
    adaptively (scipy.integrate.quad_vec). ``df`` = math.inf: the z test, 2Φ(margin - c) - 1."""
    crit = _critical(alpha, df)
    if crit <= 0:
        raise ValueError(f"tost_power: alpha must lie below 0.5, got {alpha}")
    margin = np.asarray(margin, dtype=np.float64)
    if math.isinf(df):
        return np.clip(2 * normal_cdf(margin - crit) - 1, 0, 1)
    finite = np.isfinite(margin)
    m = np.where(finite, np.clip(margin, 0.0, None), 0.0)
    sd_ratio = scipy.stats.chi(df, scale=1.0 / math.sqrt(df))

    def integrand(r: float) -> np.ndarray:           # z = r · margin, r in [0, 1]
        return 2 * m * scipy.stats.norm.pdf(r * m) * sd_ratio.cdf((1 - r) * m / crit)

    inside = scipy.integrate.quad_vec(integrand, 0.0, 1.0, epsabs=1e-15, epsrel=1e-13)[0]
    out = np.where(finite, np.clip(inside, 0.0, 1.0), np.where(np.isnan(margin), np.nan, margin > 0))
    return out if out.ndim else out[()]


def mde_shift(df: float, alpha: float = 0.025, power: float = 0.8) -> float:
    """The effect (in standard errors) that the one-sided t test at ``alpha`` detects with
    probability ``power`` (alpha = 0.025: the two-sided 5 % test, ignoring its other tail)."""
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power!r}")
    crit = _critical(alpha, df)

    def short(shift: float) -> float:
        return float(_nct_sf(crit, df, shift)) - power

    if short(0.0) >= 0:            # power <= alpha: no positive effect needed
        return 0.0
    hi = 1.0
    while short(hi) < 0:
        hi *= 2.0
    return float(scipy.optimize.brentq(short, 0.0, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps))


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
    def of(cls, values) -> TDist:
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

    def item(self, index) -> TDist:
        return TDist(np.asarray(self.mean)[index], np.asarray(self.se)[index], self.n)


@dataclass(frozen=True)
class SlopeDist(TDist):
    """An ordinary-least-squares slope over ``n`` points: (b - e) / se ~ Student t with n - 2
    degrees of freedom (``n`` counts the points, not seeds)."""

    @property
    def df(self) -> float:
        return float(self.n - 2) if self.n > 2 else math.nan


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

    def item(self, index) -> Replicates:
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


__all__ = [
    "Dist",
    "Estimate",
    "MaxMin",
    "Replicates",
    "TDist",
    "bootstrap_ci",
    "holm",
    "mde_shift",
    "mean_ci",
    "nct_cdf",
    "normal_cdf",
    "normal_quantile",
    "paired_difference",
    "ratio_estimate",
    "replicate_interval",
    "t_cdf",
    "t_power",
    "t_quantile",
    "t_sf",
    "tost_power",
]


def pooled_random_effects(estimate, se) -> TDist:
    """Random-effects mean of k points, batched: ``estimate`` and ``se`` [..., k] (each point's
    mean and standard error; the last axis holds the points). DerSimonian-Laird between-point
    variance τ², weights 1 / (se² + τ²), and the Hartung-Knapp-Sidik-Jonkman standard error
    with its scale floored at 1 (the "ad hoc" correction of Röver et al. 2015: without it the
    interval is too narrow when the points agree more than their standard errors say; the
    calibration tests measured 4.8 % instead of 2.5 % per tail on a null map), so (mean - e) / se
    ~ t with k - 1 df (``TDist`` with n = k). Written here for two reasons: statsmodels'
    ``combine_effects(method_re="dl")`` leaves τ² negative in that case (then its mean is wrong;
    the tests show one) and has no floored scale, and the calibration judges thousands of
    simulated maps in one call. Where its τ² >= 0 and the scale >= 1 it gives the same numbers
    (tested). One point: its own value, NaN se."""
    e = np.asarray(estimate, dtype=np.float64)
    v = np.square(np.asarray(se, dtype=np.float64))
    k = e.shape[-1]
    if k == 0:
        raise ValueError("pooled_random_effects: no points")
    if k == 1:
        return TDist(e[..., 0], np.full(e.shape[:-1], np.nan), 1)
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise ValueError("pooled_random_effects: every point needs a finite standard error > 0")
    w0 = 1 / v
    mean0 = (w0 * e).sum(-1, keepdims=True) / w0.sum(-1, keepdims=True)
    q = (w0 * np.square(e - mean0)).sum(-1)
    c = w0.sum(-1) - np.square(w0).sum(-1) / w0.sum(-1)
    tau2 = np.maximum(0.0, (q - (k - 1)) / c)
    w = 1 / (v + tau2[..., None])
    mean = (w * e).sum(-1) / w.sum(-1)
    scale = np.maximum(1.0, (w * np.square(e - mean[..., None])).sum(-1) / (k - 1))
    return TDist(mean, np.sqrt(scale / w.sum(-1)), k)
