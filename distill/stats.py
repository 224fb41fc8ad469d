"""Scores over seeds: mean with a Student-t 95% interval, and paired differences between two recipes.

One run of a student is one draw: its initialisation and data order come from the seed, and on 1,000
test rows one standard error of accuracy is about 1.3 points. A claim that recipe A beats recipe B is
therefore made only from several seeds, and only when the t-interval of the paired difference
(A's score minus B's, seed by seed) excludes zero; otherwise the honest reading is "no measurable
difference". Pure Python (math only), so the report and its tests need neither scipy nor torch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from zhkd.distill.errors import DistillError

CONFIDENCE = 0.95


def _t_pdf(x: float, df: int) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf(x: float, df: int, *, panels: int = 2000) -> float:
    """P(T <= x) by Simpson's rule on the density from 0 to |x| (the density is smooth and symmetric)."""
    if x == 0:
        return 0.5
    b = abs(x)
    h = b / panels
    total = _t_pdf(0.0, df) + _t_pdf(b, df)
    total += sum((4 if i % 2 else 2) * _t_pdf(i * h, df) for i in range(1, panels))
    half = total * h / 3
    return 0.5 + half if x > 0 else 0.5 - half


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (bisection on the CDF; p in (0.5, 1))."""
    if df < 1:
        raise DistillError(f"a t-interval needs at least 2 values (degrees of freedom {df})")
    if not 0.5 < p < 1:
        raise DistillError(f"quantile {p} must lie in (0.5, 1)")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Interval:
    """Mean of `values` with the two-sided t-interval at `confidence`; `half_width` is what ± shows."""

    mean: float
    low: float
    high: float
    half_width: float
    n: int
    sd: float
    confidence: float = CONFIDENCE

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return asdict(self)


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t(1 - (1 - confidence)/2, n - 1) · sd / √n over `values` (at least two)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        raise DistillError(f"an interval needs at least 2 values, got {len(values)}")
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = t_quantile(1 - (1 - confidence) / 2, len(values) - 1) * sd / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, half, len(values), sd, confidence)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The interval of mean(a - b), pairing the i-th value of each (the same seed)."""
    if len(a) != len(b):
        raise DistillError(f"paired values differ in number: {len(a)} and {len(b)}")
    return mean_interval([x - y for x, y in zip(a, b, strict=True)], confidence)


def verdict(difference: Interval) -> str:
    """'gain', 'loss' or 'none' (no measurable difference): the sign only when the interval excludes zero."""
    if not difference.excludes_zero():
        return "none"
    return "gain" if difference.mean > 0 else "loss"
