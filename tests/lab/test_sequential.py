"""The verdicts' statistics (project/lab/sequential.py) by hand against scipy: the two hypotheses'
p-values, the sequential p-value between the look alone and Bonferroni, Benjamini-Hochberg, the
interval a verdict reads, the probability of improvement and the seeds an undecided claim needs.
tests/lab/test_simulate.py checks the error rates by simulation."""

import math
import random

import pytest
from scipy import stats

from project.lab import sequential
from project.lab.sequential import EFFECT, NO_EFFECT, UNDECIDED

LOOKS = (3, 6, 9, 12)


def test_p_values_are_one_sided_paired_t_tests_by_hand():
    d = [0.012, 0.02, 0.004, 0.015, 0.009]
    lower = sequential.test([-x for x in d], "lower", 0.01, (5,))
    assert lower["p"][EFFECT] == pytest.approx(stats.ttest_1samp([-x for x in d], 0, alternative="less").pvalue)
    # no effect of the margin: theta = -mean >= 0.01 rejected by the one-sided test against 0.01
    assert lower["p"][NO_EFFECT] == pytest.approx(stats.ttest_1samp(d, 0.01, alternative="less").pvalue)
    same = sequential.test(d, "same", 0.02, (5,))
    assert same["p"][EFFECT] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)  # two-sided
    tost = max(stats.ttest_1samp(d, -0.02, alternative="greater").pvalue,
               stats.ttest_1samp(d, 0.02, alternative="less").pvalue)
    assert same["p"][NO_EFFECT] == pytest.approx(min(1.0, 2 * tost))  # each side at half the level
    assert lower["P"] == lower["p"]  # one look: nothing to correct
    assert sequential.test([0.5], "lower", 0.01, (5,))["P"] == {EFFECT: 1.0, NO_EFFECT: 1.0}


def test_the_sequential_p_value_lies_between_the_look_alone_and_bonferroni():
    weights = [sequential.weight(n, LOOKS) for n in LOOKS]
    assert weights == pytest.approx([1 / 16, 1 / 4, 9 / 16, 1])
    previous = 0.0
    for s in (1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.2):
        F = sequential.null_cdf(s, LOOKS)
        assert s <= F <= sum(weights) * s and F >= previous
        previous = F
    assert sequential.null_cdf(0.03, (7,)) == 0.03
    for level in (0.05 / 19, 0.04):
        last = sequential.nominal(level, LOOKS)
        assert sequential.null_cdf(last, LOOKS) <= level < sequential.null_cdf(last * 1.01, LOOKS)
        assert sequential.nominal(level, LOOKS, n=6) == pytest.approx(last / 4)  # a look's share: (6/12)^2


def test_benjamini_hochberg_by_hand():
    P = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    # k/10 * 0.05: 0.005, 0.01, 0.015, 0.02, 0.025 ...: the 2nd smallest is the last at or under its line
    assert sequential.discoveries(P, 0.05) == pytest.approx(0.01)
    assert sequential.discoveries([0.5, 0.9], 0.05) == 0.0
    assert sequential.discoveries([0.01, 0.02, 0.03], 0.05) == pytest.approx(0.05)


def test_a_verdict_reads_its_interval():
    rng = random.Random(3)
    for _ in range(200):
        expect = rng.choice(["lower", "higher", "same"])
        d = [rng.gauss(rng.choice([-0.02, 0.0, 0.005, 0.03]), 0.01) for _ in range(rng.choice([3, 6, 12]))]
        v = sequential.verdict(sequential.test(d, expect, 0.01, LOOKS), 0.01, expect, 0.01, LOOKS)
        sign = {"lower": -1, "higher": 1}.get(expect)
        if expect == "same":
            assert (v["verdict"] == EFFECT) == (v["low"] > 0 or v["high"] < 0)
            assert (NO_EFFECT == v["verdict"] or v["within_margin"]) == (-0.01 < v["low"] and v["high"] < 0.01)
        else:
            beyond_zero = v["low"] > 0 if sign > 0 else v["high"] < 0
            short_of_margin = v["high"] < 0.01 if sign > 0 else v["low"] > -0.01
            assert (v["verdict"] == EFFECT) == beyond_zero
            assert (v["verdict"] == NO_EFFECT or v["within_margin"]) == short_of_margin
        if v["verdict"] == UNDECIDED and v["seeds_needed"] is not None:
            assert v["seeds_needed"] > len(d)  # these seeds did not decide it: it needs more


def test_probability_of_improvement_is_the_share_of_seeds_with_wilsons_interval():
    pi = sequential.improvement([-0.01, -0.02, 0.0, 0.01, -0.03], better=-1)  # lower is better: 3 wins, a tie
    assert pi["estimate"] == pytest.approx(3.5 / 5) and pi["seeds"] == 5
    z, p, n = 1.959964, 0.7, 5
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert pi["interval"] == [pytest.approx(centre - half, abs=1e-5), pytest.approx(centre + half, abs=1e-5)]


def test_seeds_needed_is_the_fewest_that_would_clear_the_bound():
    n = sequential.seeds_needed(-0.02, 0.01, "lower", 0.005, 0.01)
    assert stats.t.ppf(0.99, n - 1) * 0.01 / math.sqrt(n) < 0.02 <= stats.t.ppf(0.99, n - 2) * 0.01 / math.sqrt(n - 1)
    assert sequential.seeds_needed(0.01, 0.01, "higher", 0.01, 0.01) is not None  # the effect side has room
    assert sequential.seeds_needed(0.0, 0.0, "same", 0.01, 0.01) == 2
