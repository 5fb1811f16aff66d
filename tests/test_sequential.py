"""The anytime-valid confidence sequence of ``lossaug advise`` (``stats.confidence_sequence``): its closed form
against the mixture martingale it solves, and its validity and power by simulation, looking after every pair."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from lossaug.compare.stats import confidence_sequence, half_width, sequence_pairs_needed

LOOKS = range(2, 31)  # checked after every n from 2 to 30, as advise does after every seed


def _martingale(values: list[float], mu: float, c: float = 0.5) -> float:
    """The Gaussian-mixture t martingale at ``mu``, computed directly (the oracle of the closed form)."""
    y = [v - mu for v in values]
    n, total, squares = len(y), sum(y), sum(v * v for v in y)
    return math.sqrt(c / (n + c)) * (squares / (squares - total**2 / (n + c))) ** (n / 2)


def test_the_bounds_are_where_the_martingale_reaches_one_over_alpha():
    rng = random.Random(0)
    for n in (4, 8, 30):
        values = [rng.gauss(0.3, 1.0) for _ in range(n)]
        low, high = confidence_sequence(values, 0.95)
        assert _martingale(values, high) == pytest.approx(20.0, rel=1e-9)
        assert _martingale(values, low) == pytest.approx(20.0, rel=1e-9)
        assert _martingale(values, (low + high) / 2) < 20.0 < _martingale(values, high + 0.01)


def test_unbounded_until_it_can_bound_and_with_no_spread():
    assert confidence_sequence([]) == (-math.inf, math.inf)
    assert confidence_sequence([0.01]) == (-math.inf, math.inf)
    assert confidence_sequence([0.01, 0.03, 0.02]) == (-math.inf, math.inf)  # n = 3 at 95%: not yet
    assert all(map(math.isfinite, confidence_sequence([0.01, 0.03, 0.02, 0.05])))
    assert confidence_sequence([0.026] * 10) == (-math.inf, math.inf)  # identical differences: no verdict
    for bad in ([0.1, math.nan], [math.inf, 0.0]):
        with pytest.raises(ValueError, match="finite"):
            confidence_sequence(bad)
    with pytest.raises(ValueError, match="confidence"):
        confidence_sequence([0.1, 0.2], confidence=1.0)


def test_width_is_about_1_7_times_the_fixed_n_t_interval():
    rng = random.Random(1)
    for n in (8, 15, 30):
        values = [rng.gauss(0, 1) for _ in range(n)]
        low, high = confidence_sequence(values)
        ratio = (high - low) / 2 / half_width(statistics.stdev(values), n)
        assert 1.6 < ratio < 1.8, (n, ratio)


def _misses(draw, runs: int, confidence: float, seed: int) -> float:
    """The fraction of runs in which the sequence excludes the true mean 0 at any look n = 2..30."""
    rng = random.Random(seed)
    missed = 0
    for _ in range(runs):
        values = [draw(rng) for _ in range(max(LOOKS))]
        missed += any(not (lambda b: b[0] <= 0 <= b[1])(confidence_sequence(values[:n], confidence)) for n in LOOKS)
    return missed / runs


def _student_t3(rng: random.Random) -> float:
    return rng.gauss(0, 1) / math.sqrt(sum(rng.gauss(0, 1) ** 2 for _ in range(3)) / 3)


@pytest.mark.parametrize(
    "draw", [lambda rng: rng.gauss(0, 2.5), _student_t3, lambda rng: rng.expovariate(1) - rng.expovariate(1)]
)
def test_under_the_null_it_misses_in_at_most_5_percent_of_runs(draw):
    # normal, Student t with 3 df and Laplace differences, sd unknown; 1,500 runs: the miss rate's own sd is 0.6 points
    assert _misses(draw, 1500, 0.95, seed=2) <= 0.05


def _resolved_at(values: list[float], confidence: float) -> int:
    for n in range(2, len(values) + 1):
        low, high = confidence_sequence(values[:n], confidence)
        if low > 0 or high < 0:
            return n
    return len(values) + 1


def test_a_true_effect_of_one_sd_resolves_in_a_median_of_at_most_15_pairs():
    rng = random.Random(3)
    stops = [_resolved_at([rng.gauss(1.0, 1.0) for _ in range(60)], 0.95) for _ in range(600)]
    assert statistics.median(stops) <= 15


def test_bonferroni_over_arms_keeps_the_family_wise_error_at_5_percent():
    # three arms against one shared baseline curve per seed (correlated differences), all without effect; advise
    # stops when every arm is resolved or after 30 seeds. A family error: any arm ever said better or worse.
    rng, arms, runs, errors = random.Random(4), 3, 800, 0
    for _ in range(runs):
        shared = [rng.gauss(0, 1) for _ in range(max(LOOKS))]
        per_arm = [[s + rng.gauss(0, 1) for s in shared] for _ in range(arms)]
        for n in LOOKS:
            bounds = [confidence_sequence(values[:n], 1 - 0.05 / arms) for values in per_arm]
            if any(low > 0 or high < 0 for low, high in bounds):
                errors += 1
                break
    assert errors / runs <= 0.05


def test_pairs_needed_at_the_observed_sd():
    n = sequence_pairs_needed(sd=1.0, target=0.5, n_from=4)
    assert n is not None and n > 30  # ±0.5 sd takes more than 30 pairs at 95%, anytime
    low, high = confidence_sequence([(-1) ** i * 1.0 for i in range(n)])  # sd about 1 at n pairs
    assert (high - low) / 2 <= 0.5 * 1.02
    assert sequence_pairs_needed(1.0, 0.5, n_from=n + 5) == n + 5  # never fewer than already run
    assert sequence_pairs_needed(math.nan, 0.5, 4) is None and sequence_pairs_needed(1.0, 0.0, 4) is None
