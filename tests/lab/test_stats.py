"""The lab's statistics by hand: sample std, Student's t interval, the paired differences from the
baseline, Holm's correction and replication, checked against scipy's own tests."""

import math

import pytest
from scipy import stats

from project.lab.stats import METRICS, holm, mean_std_ci, paired_t, replication, summarize


def run(name, seed, test_acc, gap=0.05):
    return {"experiment": name, "seed": seed, "status": "ok", "reason": "", "test_acc": test_acc, "gap": gap,
            **{m: 0.0 for m in METRICS if m not in ("test_acc", "gap")}}


def test_paired_differences_against_scipy():
    baseline = [0.90, 0.93, 0.88, 0.91, 0.95]
    technique = [0.92, 0.94, 0.91, 0.92, 0.97]  # better on every seed by 1-3 points, while the seeds spread 7
    results = [run("baseline", s, a) for s, a in enumerate(baseline)] + [run("t", s, a) for s, a in enumerate(technique)]
    row = summarize(results, ["baseline", "t"])[1]
    d = [a - b for a, b in zip(technique, baseline)]
    assert row["test_acc_diff_mean"] == pytest.approx(sum(d) / 5)
    assert row["test_acc_diff_p"] == pytest.approx(stats.ttest_rel(technique, baseline).pvalue, rel=1e-9)
    interval = stats.ttest_rel(technique, baseline).confidence_interval(0.95)
    assert row["test_acc_diff_ci95"] == pytest.approx((interval.high - interval.low) / 2, rel=1e-9)
    assert row["test_acc_diff_by_seed"].split() == [f"{s}:{v:+.6f}" for s, v in enumerate(d)]
    # the unpaired view cannot see it: the technique's own interval contains the baseline's mean
    assert abs(row["test_acc_mean"] - sum(baseline) / 5) < row["test_acc_ci95"]
    assert row["test_acc_differs"]  # the paired one does, after the correction over 2 comparisons


def test_holm_by_hand():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
    # sorted 0.01, 0.03, 0.04 (m = 3): 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert adjusted["a"] == pytest.approx(0.03) and adjusted["c"] == pytest.approx(0.06)
    assert adjusted["b"] == pytest.approx(0.06) and math.isnan(adjusted["d"])
    assert holm({"a": 0.6, "b": 0.9}) == {"a": 1.0, "b": 1.0}  # never below an earlier one


def test_marks_are_corrected_for_the_number_of_comparisons():
    # p = 0.02 alone is marked; among many comparisons Holm multiplies it and the mark goes
    base = [0.90, 0.92, 0.91, 0.89, 0.93]
    lifted = [b + d for b, d in zip(base, [0.012, 0.004, 0.010, 0.002, 0.011])]
    p = stats.ttest_rel(lifted, base).pvalue
    assert 0.01 < p < 0.05
    alone = summarize([run("baseline", s, a) for s, a in enumerate(base)] +
                      [run("t", s, a) for s, a in enumerate(lifted)], ["baseline", "t"])
    assert alone[1]["test_acc_differs"]
    names = ["baseline", "t"] + [f"null{i}" for i in range(5)]
    many = [run("baseline", s, a) for s, a in enumerate(base)] + [run("t", s, a) for s, a in enumerate(lifted)]
    many += [run(n, s, a + (0.01 if s % 2 else -0.01)) for n in names[2:] for s, a in enumerate(base)]
    rows = {r["experiment"]: r for r in summarize(many, names)}
    assert rows["t"]["test_acc_diff_p"] == pytest.approx(p) and not rows["t"]["test_acc_differs"]
    # 12 comparisons: 6 experiments x (test acc, gap); t's p is the smallest, so it is multiplied by 12
    assert rows["t"]["test_acc_diff_p_holm"] == pytest.approx(min(1, p * 12))


def test_replication_needs_a_mark_on_both_seed_sets_with_the_same_sign():
    def rows(diff_a, diff_b):
        first = summarize([run("baseline", s, 0.9 + s / 100) for s in range(5)] +
                          [run("t", s, 0.9 + s / 100 + diff_a[s]) for s in range(5)], ["baseline", "t"])
        second = summarize([run("baseline", s, 0.9 + s / 100) for s in range(5, 10)] +
                           [run("t", s, 0.9 + s / 100 + diff_b[s - 5]) for s in range(5, 10)], ["baseline", "t"])
        return replication(first, second)

    steady = [0.02, 0.021, 0.019, 0.022, 0.018]
    assert [f["replicated"] for f in rows(steady, steady)] == [True]
    assert [f["replicated"] for f in rows(steady, [0.01, -0.02, 0.0, 0.015, -0.01])] == [False]
    assert [f["replicated"] for f in rows(steady, [-d for d in steady])] == [False]  # opposite sign
    assert rows([0.01, -0.02, 0.0, 0.015, -0.01], [0.01, -0.02, 0.0, 0.015, -0.01]) == []  # never marked


def test_mean_std_ci_by_hand():
    mean, std, ci = mean_std_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert ci == pytest.approx(3.1824 * math.sqrt(5 / 3) / 2, rel=1e-4)  # t(0.975, 3 df) = 3.1824
    assert mean_std_ci([0.7])[1:] == (0.0, pytest.approx(float("nan"), nan_ok=True))
    assert all(math.isnan(v) for v in mean_std_ci([]))
    assert paired_t([0.01, 0.01, 0.01])[2] == 0.0 and paired_t([0.0, 0.0])[2] == 1.0
