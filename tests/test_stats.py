"""Scores over seeds: t quantiles, intervals, paired differences and the verdict they allow."""

from __future__ import annotations

import math
import statistics

import pytest

from zhkd.distill.errors import DistillError
from zhkd.distill.stats import mean_interval, paired_difference, t_quantile, verdict


@pytest.mark.parametrize(("df", "expected"), [
    (1, 12.706205), (2, 4.302653), (4, 2.776445), (9, 2.262157), (29, 2.045230), (200, 1.971896),
])
def test_t_quantile_matches_the_published_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=2e-5)


def test_interval_is_the_mean_plus_minus_t_times_the_standard_error():
    values = [0.80, 0.82, 0.79]
    interval = mean_interval(values)
    half = 4.302653 * statistics.stdev(values) / math.sqrt(3)
    assert interval.mean == pytest.approx(statistics.fmean(values))
    assert interval.half_width == pytest.approx(half, rel=1e-5)
    assert (interval.low, interval.high) == pytest.approx((interval.mean - half, interval.mean + half), rel=1e-5)
    assert interval.n == 3 and interval.confidence == 0.95


def test_identical_values_give_a_zero_width_interval():
    interval = mean_interval([0.5, 0.5, 0.5])
    assert interval.half_width == 0 and interval.low == interval.high == 0.5


def test_a_consistent_gain_is_claimed_and_a_noisy_one_is_not():
    base = [0.770, 0.775, 0.768, 0.772]
    consistent = [b + 0.010 + e for b, e in zip(base, [0.001, -0.001, 0.0, 0.001], strict=True)]
    noisy = [b + e for b, e in zip(base, [0.02, -0.015, 0.01, -0.012], strict=True)]
    gain = paired_difference(consistent, base)
    assert gain.excludes_zero() and verdict(gain) == "gain"
    assert verdict(paired_difference(base, consistent)) == "loss"
    none = paired_difference(noisy, base)
    assert not none.excludes_zero() and verdict(none) == "none"


def test_pairing_removes_what_the_seeds_share():
    # Seeds differ a lot from each other, but B is always 0.5 point below A: paired, that is a clear gain.
    a = [0.70, 0.80, 0.75]
    b = [x - 0.005 for x in a]
    assert verdict(paired_difference(a, b)) == "gain"
    unpaired_a, unpaired_b = mean_interval(a), mean_interval(b)
    assert unpaired_a.low < unpaired_b.high  # the unpaired intervals overlap


def test_too_few_or_unpaired_values_are_refused():
    with pytest.raises(DistillError, match="at least 2"):
        mean_interval([0.5])
    with pytest.raises(DistillError, match="differ in number"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(DistillError, match="quantile"):
        t_quantile(0.3, 3)
