"""Tests of lossaug.compare.stats: t quantiles against published tables, verdicts, power and seeds needed."""

import math
import statistics

import pytest

from lossaug.compare.stats import (
    VERDICTS,
    half_width,
    min_detectable_effect,
    paired_difference,
    regularized_beta,
    seeds_needed,
    t_cdf,
    t_quantile,
    verdict,
)


@pytest.mark.parametrize(
    "p,df,expected",
    [
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 10, 2.228),
        (0.975, 30, 2.042),
        (0.975, 120, 1.980),
        (0.8, 1, 1.376),
        (0.8, 10, 0.879),
        (0.995, 5, 4.032),
        (0.9995, 1, 636.619),
    ],
)
def test_t_quantile_matches_published_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)
    assert t_quantile(1 - p, df) == pytest.approx(-t_quantile(p, df))


def test_t_quantile_approaches_the_normal_and_handles_the_edges():
    z = statistics.NormalDist().inv_cdf(0.975)
    assert t_quantile(0.975, 1e6) == pytest.approx(z, abs=1e-5)
    assert t_quantile(0.5, 7) == 0 and math.isnan(t_quantile(0.975, 0))
    with pytest.raises(ValueError, match="probability must be in \\(0, 1\\), got 1.5"):
        t_quantile(1.5, 3)
    with pytest.raises(ValueError, match="degrees of freedom must be >= 0, got -2"):
        t_quantile(0.9, -2)


def test_regularized_beta_closed_forms():
    # I_x(1, 1) = x and I_x(a, 1) = x^a; t with 1 df is Cauchy: P(T <= t) = 1/2 + atan(t)/pi.
    assert regularized_beta(1, 1, 0.3) == pytest.approx(0.3)
    assert regularized_beta(2.5, 1, 0.4) == pytest.approx(0.4**2.5)
    assert t_cdf(3.0, 1) == pytest.approx(0.5 + math.atan(3.0) / math.pi)
    with pytest.raises(ValueError, match="x=1.2"):
        regularized_beta(1, 1, 1.2)


def test_paired_difference_summary():
    summary = paired_difference([0.1, 0.2, 0.3])
    assert summary.n == 3 and summary.mean == pytest.approx(0.2) and summary.sd == pytest.approx(0.1)
    assert summary.half_width == pytest.approx(4.302653 * 0.1 / math.sqrt(3))
    assert summary.low == pytest.approx(0.2 - summary.half_width)
    assert set(summary.to_json()) == {"n", "mean", "sd", "half_width", "low", "high"}
    one = paired_difference([0.5])
    assert one.mean == 0.5 and math.isnan(one.sd) and math.isnan(one.half_width)
    assert math.isnan(paired_difference([]).mean)


@pytest.mark.parametrize(
    "mean,half,expected",
    [
        (-0.0047, 0.0029, "better"),  # the select-from-0.5 result: -0.47 ± 0.29 points
        (0.004, 0.001, "worse"),
        (-0.001, 0.003, "equivalent within ±δ"),
        (0.0, 0.005, "equivalent within ±δ"),  # touching ±δ still counts as inside
        (-0.0105, 0.036, "unresolved"),  # the equal-time arm: -1.05 ± 3.6 points
        (0.002, 0.004, "unresolved"),  # includes 0, leaves ±δ on the right
        (-0.002, 0.001, "better"),  # excludes 0 and inside ±δ: reported as better
        (0.01, math.nan, "unresolved"),  # n = 1
    ],
)
def test_verdicts_on_constructed_intervals(mean, half, expected):
    assert verdict(mean, half, margin=0.005) == expected
    assert expected in VERDICTS


def test_verdict_rejects_a_bad_margin():
    with pytest.raises(ValueError, match="margin must be > 0, got 0"):
        verdict(0.0, 0.001, margin=0)


def test_min_detectable_effect_formula():
    # (t_{0.975,10} + t_{0.8,10}) * sd / sqrt(11) with the table values 2.228 and 0.879
    assert min_detectable_effect(0.0043, 11) == pytest.approx((2.228 + 0.879) * 0.0043 / math.sqrt(11), rel=1e-3)
    assert min_detectable_effect(0.01, 12) < min_detectable_effect(0.01, 6)
    assert math.isnan(min_detectable_effect(0.01, 1))


@pytest.mark.parametrize("sd", [0.0043, 0.0132, 0.0305, 0.001])
def test_seeds_needed_is_the_smallest_n_that_resolves_the_target(sd):
    n = seeds_needed(sd, target=0.003)
    assert half_width(sd, n) <= 0.003
    assert n == 2 or half_width(sd, n - 1) > 0.003


def test_seeds_needed_known_values_and_edges():
    # The select-from-0.5 design: paired sd 0.43 points resolves ±0.3 with 11 seeds (±0.289; 10 give ±0.308).
    assert seeds_needed(0.0043) == 11
    assert seeds_needed(0.0) == 2 and seeds_needed(math.nan) is None
    with pytest.raises(ValueError, match="target half-width must be > 0, got 0"):
        seeds_needed(0.01, target=0)
