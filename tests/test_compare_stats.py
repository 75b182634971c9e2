"""The lab's statistics by hand: sample std, Student's t interval, and the marks."""

import math

import pytest

from project.compare_stats import METRICS, mean_std_ci, summarize


def test_confidence_intervals_and_marks_by_hand():
    def run(name, test_acc, gap):
        return {"experiment": name, "status": "ok", "reason": "", "test_acc": test_acc, "gap": gap,
                **{m: 0.0 for m in METRICS if m not in ("test_acc", "gap")}}

    results = [run("baseline", a, 0.05) for a in (0.90, 0.92, 0.91)]
    results += [run("better", a, 0.05) for a in (0.95, 0.96, 0.97)]
    results += [run("same", a, g) for a, g in ((0.90, 0.01), (0.93, 0.02), (0.92, 0.03))]
    rows = {r["experiment"]: r for r in summarize(results, ["baseline", "better", "same"])}
    t2 = 4.3027  # Student's t, 97.5% quantile, 2 degrees of freedom
    assert rows["better"]["test_acc_ci95"] == pytest.approx(t2 * 0.01 / 3 ** 0.5, rel=1e-4)
    assert rows["better"]["test_acc_differs"] and not rows["same"]["test_acc_differs"]
    assert rows["same"]["gap_differs"] and not rows["better"]["gap_differs"]  # gap 0.02 ± 0.025 vs 0.05
    assert not rows["baseline"]["test_acc_differs"]


def test_mean_std_ci_by_hand():
    mean, std, ci = mean_std_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert ci == pytest.approx(3.1824 * math.sqrt(5 / 3) / 2, rel=1e-4)  # t(0.975, 3 df) = 3.1824
    assert mean_std_ci([0.7])[1:] == (0.0, pytest.approx(float("nan"), nan_ok=True))
    assert all(math.isnan(v) for v in mean_std_ci([]))
