"""Intervals and tests against closed forms and known cases: the bootstrap interval of an accuracy
matches the normal approximation and covers the true value about 95% of the time, pairing narrows
a difference's interval, the exact McNemar p-value equals the binomial sum, and claims follow
their rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyspace_core.errors import PolySpaceError
from polyspace_core.stats import Claim, bootstrap_interval, mcnemar_exact, paired_difference


def test_an_accuracy_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    correct = rng.random(2000) < 0.6
    ci = bootstrap_interval(correct)
    p = correct.mean()
    half = 1.96 * math.sqrt(p * (1 - p) / correct.size)
    assert ci.value == pytest.approx(p)
    assert ci.low == pytest.approx(p - half, abs=0.004) and ci.high == pytest.approx(p + half, abs=0.004)
    assert bootstrap_interval(correct) == ci  # seeded: the same interval every time


def test_the_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    trials = 300
    for t in range(trials):
        ci = bootstrap_interval(rng.random(300) < 0.7, resamples=1000, seed=t)
        covered += ci.low <= 0.7 <= ci.high
    assert 0.91 <= covered / trials <= 0.98, covered / trials


def test_pairing_narrows_the_interval_of_a_difference():
    rng = np.random.default_rng(2)
    a = rng.random(500) < 0.6
    b = a.copy()
    flips = rng.choice(500, 40, replace=False)
    b[flips[:10]] = ~b[flips[:10]]  # b mostly agrees with a; 40 clips differ in all
    b[flips[10:]] = False
    paired = paired_difference(a, b)
    assert paired.value == pytest.approx(a.mean() - b.mean())
    # the unpaired spread: both accuracies' intervals added in quadrature
    sa, sb = bootstrap_interval(a), bootstrap_interval(b)
    unpaired_half = math.hypot(sa.high - sa.low, sb.high - sb.low) / 2
    assert (paired.high - paired.low) / 2 < 0.5 * unpaired_half
    assert paired.low > 0 and paired.excludes(0)


def test_mcnemar_equals_the_exact_binomial_sum():
    # 3 clips only the first classifier gets right, 12 only the second, 85 both or neither
    a = np.array([1] * 3 + [0] * 12 + [1] * 50 + [0] * 35, dtype=bool)
    b = np.array([0] * 3 + [1] * 12 + [1] * 50 + [0] * 35, dtype=bool)
    n, k = 15, 3
    expected = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    assert mcnemar_exact(a, b) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(b, a) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(a, a) == 1.0


def test_claims_follow_their_rule():
    rng = np.random.default_rng(3)
    better = rng.random(400) < 0.7
    worse = better & (rng.random(400) < 0.8)
    claim = Claim.difference("a_beats_b", "a > b", paired_difference(better, worse), mcnemar_exact(better, worse))
    assert claim.holds and claim.ci_low > 0 and claim.p_value < 0.05 and "McNemar" in claim.rule
    tie = Claim.difference("same", "a > a", paired_difference(better, better), mcnemar_exact(better, better))
    assert not tie.holds and tie.value == 0.0 and tie.p_value == 1.0
    assert set(claim.as_dict()) == {"id", "statement", "value", "ci_low", "ci_high", "p_value", "holds", "rule"}


@pytest.mark.parametrize("a,b,match", [([1.0], [1.0], "at least 2"), ([1.0, float("nan")], [1.0, 0.0], "NaN"),
                                       ([1.0, 0.0, 1.0], [1.0, 0.0], "same clips")])
def test_bad_inputs_are_one_line_errors(a, b, match):
    with pytest.raises(PolySpaceError, match=match):
        paired_difference(a, b)
