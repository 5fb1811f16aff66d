"""Paired-difference statistics for ``lossaug compare``: Student-t quantiles, intervals, verdicts and power.

Pure functions of plain floats (no torch, no scipy). Units are the caller's: ``compare`` passes errors as fractions
of test images in [0, 1] (0.005 = 0.5 percentage points) and converts to points only when it prints. Every
difference is ``treatment - control`` of one seed, so a negative difference in error means the treatment is better.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from lossaug.errors import InputError

VERDICTS = ("better", "worse", "equivalent within ±δ", "unresolved")
CONFIDENCE = 0.95  # two-sided level of every interval
POWER = 0.8  # power at which the minimal detectable effect is given
RESOLUTION = 0.003  # target 95% half-width for seeds_needed: 0.3 percentage points, as a fraction
NO_SPREAD = 1e-9  # a sample sd at most this is none (float noise of equal differences), far below one test image


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            return result
    raise AssertionError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise InputError(f"regularized_beta needs a, b > 0, got a={a}, b={b}")
    if not 0 <= x <= 1:
        raise InputError(f"regularized_beta needs 0 <= x <= 1, got x={x}")
    if x in (0, 1):
        return float(x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):  # the fraction converges fast on this side; use the symmetry on the other
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom."""
    if not df > 0:
        raise InputError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * regularized_beta(df / 2, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The ``p``-quantile of Student's t with ``df`` degrees of freedom (bisection on ``t_cdf``, to ~1e-12).

    ``t_quantile(0.975, n - 1)`` is the two-sided 95% factor of a mean of n values; NaN when ``df`` < 1 would
    leave no spread to estimate (``df`` = 0).
    """
    if not 0 < p < 1:
        raise InputError(f"quantile probability must be in (0, 1), got {p}")
    if df == 0 or math.isnan(df):
        return math.nan
    if not df > 0:
        raise InputError(f"degrees of freedom must be >= 0, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def half_width(sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the two-sided t-interval of a mean of ``n`` values with sample sd ``sd`` (NaN if n < 2)."""
    if n < 2 or math.isnan(sd):
        return math.nan
    return t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences ``treatment - control`` with its sample sd, n and 95% t-interval
    half-width (``low``/``high`` = mean ∓ half-width), in the units of the differences."""

    n: int
    mean: float
    sd: float
    half_width: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def to_json(self) -> dict:
        return {**asdict(self), "low": self.low, "high": self.high}


def paired_difference(differences: Sequence[float]) -> PairedDifference:
    """Summary of per-seed paired differences (NaN mean for none, NaN sd and half-width for fewer than 2, NaN
    half-width for a sample sd of 0, at most ``NO_SPREAD``)."""
    n = len(differences)
    if any(math.isnan(d) for d in differences):
        raise InputError(f"paired differences must not be NaN, got {list(differences)}")
    mean = statistics.fmean(differences) if n else math.nan
    sd = statistics.stdev(differences) if n > 1 else math.nan
    # Every seed the same difference (76 test images move errors in 1.3-point steps: seen at n = 2) measures no
    # spread, not a zero-width interval: no verdict is drawn from it. Errors k/N subtracted in floats scatter by
    # ~1e-17, so "the same" is within NO_SPREAD.
    return PairedDifference(n=n, mean=mean, sd=sd, half_width=math.nan if sd <= NO_SPREAD else half_width(sd, n))


def verdict(mean: float, half_width: float, margin: float) -> str:
    """One of ``VERDICTS`` for a difference in error ``mean`` ± ``half_width`` and equivalence margin ``margin``
    (δ > 0, same units): "better" when the whole interval is below 0, "worse" when above 0, "equivalent within
    ±δ" when it includes 0 and lies inside [-δ, δ], else "unresolved" (also for a NaN interval, n < 2).
    An interval excluding 0 is reported as better/worse even when it also lies inside ±δ."""
    if not margin > 0:
        raise InputError(f"equivalence margin must be > 0, got {margin}")
    if math.isnan(mean) or math.isnan(half_width):
        return "unresolved"
    if half_width < 0:
        raise InputError(f"half_width must be >= 0, got {half_width}")
    if mean + half_width < 0:
        return "better"
    if mean - half_width > 0:
        return "worse"
    if -margin <= mean - half_width and mean + half_width <= margin:
        return "equivalent within ±δ"
    return "unresolved"


def min_detectable_effect(sd: float, n: int, power: float = POWER, confidence: float = CONFIDENCE) -> float:
    """The smallest true mean difference a two-sided paired t-test at level ``1 - confidence`` detects with
    probability ``power`` from ``n`` pairs of sample sd ``sd``: ``(t_{1-α/2,n-1} + t_{power,n-1}) · sd / √n``
    (the usual approximation, ignoring the test's other tail). NaN when n < 2."""
    if n < 2 or math.isnan(sd):
        return math.nan
    df = n - 1
    return (t_quantile(0.5 + confidence / 2, df) + t_quantile(power, df)) * sd / math.sqrt(n)


def seeds_needed(sd: float, target: float = RESOLUTION, confidence: float = CONFIDENCE) -> int | None:
    """The smallest n >= 2 whose t-interval half-width ``t_{1-α/2,n-1} · sd / √n`` is at most ``target``
    (same units as ``sd``), supposing the paired sd stays ``sd``. None when ``sd`` is NaN."""
    if not target > 0:
        raise InputError(f"target half-width must be > 0, got {target}")
    if math.isnan(sd):
        return None
    if sd < 0:
        raise InputError(f"sd must be >= 0, got {sd}")
    # The normal quantile is below every t quantile, so no n below (z·sd/target)^2 can do; start there.
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    n = max(2, math.ceil((z * sd / target) ** 2))
    while half_width(sd, n, confidence) > target:
        n += 1
    return n


# Prior precision c of the standardized effect δ = μ/σ in the confidence sequence's Gaussian mixture, δ ~ N(0, 1/c).
# 0.5 chosen by simulation at α = 0.05: the sequence is finite from n = 4 and about 1.7x the fixed-n t-interval's
# half-width from n = 8 (1.75 at n = 8, 1.68 at n = 15-30); a true d = 1 resolves at a median of 12 pairs.
MIXTURE_PRECISION = 0.5


def _sequence_factor(n: int, alpha: float, precision: float = MIXTURE_PRECISION) -> float:
    """``h`` such that the half-width at ``n`` is ``h · sqrt(Q)``, Q the sum of squared deviations (inf: none yet).

    The mixture martingale of the scale-invariant likelihood ratio (right-Haar prior over σ, N(0, 1/c) over δ), for
    the values y = x - μ0 with S = Σy and V = Σy², is ``sqrt(c/(n+c)) · (V / (V - S²/(n+c)))^(n/2)``; Ville's
    inequality rejects μ0 when it reaches 1/α. With d = x̄ - μ0, V = Q + n·d² and S = n·d, that solves to
    ``|d| < sqrt(Q·k / (n·(n/(n+c) - k)))`` with ``k = 1 - exp(-(2/n)·(ln(1/α) + ½·ln((n+c)/c)))``."""
    exponent = (math.log(1 / alpha) + 0.5 * math.log((n + precision) / precision)) * 2 / n
    k = -math.expm1(-exponent)
    room = n / (n + precision) - k
    return math.inf if room <= 0 else math.sqrt(k / (n * room))


def confidence_sequence(differences: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``(low, high)``: an anytime-valid ``confidence`` confidence sequence for the mean of i.i.d. normal
    differences of unknown variance, evaluated at the n given. Valid at every n at once: the chance that it ever
    misses the true mean, however often it is looked at and whenever the looking stops, is at most 1 - confidence
    (Wang & Ramdas, arXiv 2310.03722: Lai's t confidence sequence with a Gaussian mixture over the standardized
    effect; a test martingale in the scale-invariant filtration). ``(-inf, inf)`` while fewer than 4 differences
    (or 2 at low confidence) bound it, and when the differences have no spread: identical differences (a coarse
    test set) give no verdict."""
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    if any(not math.isfinite(d) for d in differences):
        raise InputError(f"differences must be finite numbers, got {list(differences)}")
    n = len(differences)
    if n < 2 or min(differences) == max(differences):
        return -math.inf, math.inf
    mean = statistics.fmean(differences)
    squares = sum((d - mean) ** 2 for d in differences)
    width = _sequence_factor(n, 1 - confidence) * math.sqrt(squares)
    if not 0 < width < math.inf:
        return -math.inf, math.inf
    return mean - width, mean + width


def sequence_pairs_needed(sd: float, target: float, n_from: int, confidence: float = CONFIDENCE) -> int | None:
    """The smallest n >= ``n_from`` whose confidence-sequence half-width at sample sd ``sd`` (Q = (n-1)·sd²) is at
    most ``target``, up to 10,000; None beyond, or when ``sd`` or ``target`` give no answer."""
    if not (target > 0 and sd > 0 and math.isfinite(sd)):
        return None
    for n in range(max(n_from, 2), 10_001):
        if _sequence_factor(n, 1 - confidence) * sd * math.sqrt(n - 1) <= target:
            return n
    return None
