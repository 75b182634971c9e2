"""A curve's points and page (project/lab/curve.py), from results written by hand: the means and
95% intervals over seeds (cut to the range a figure can take; none under 3 seeds) and the lecture's
diagnosis at each swept value."""

import math

import pytest

from project.lab.curve import curve_points, write_curve

T_975_2DF = 4.302653  # Student's t, 97.5% quantile, 2 degrees of freedom (3 seeds)


def _result(value, seed, train, gap, test, status="ok"):
    return {"experiment": f"data.train_size={value}", "seed": seed, "status": status, "train_acc": train, "gap": gap,
            "test_acc": test, "bias": 1 - train, "variance": gap}


ROWS = [{"experiment": "data.train_size=100"}, {"experiment": "data.train_size=1000"}]
RESULTS = [_result(100, 0, 1.00, 0.20, 0.79), _result(100, 1, 1.00, 0.16, 0.83), _result(100, 2, 0.97, 0.18, 0.78),
           _result(1000, 0, 0.99, 0.01, 0.97), _result(1000, 1, 0.99, 0.02, 0.97), _result(1000, 2, 1.00, 0.00, 0.98),
           _result(1000, 3, 0.10, 0.00, 0.10, status="failed")]  # a failed run is not a point's seed


def test_points_are_the_means_and_intervals_over_the_seeds_that_ran():
    small, large = curve_points(ROWS, RESULTS)
    assert (small["value"], small["runs"], large["value"], large["runs"]) == ("100", 3, "1000", 3)
    gaps = [0.20, 0.16, 0.18]
    mean = sum(gaps) / 3
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / 2)
    half = T_975_2DF * sd / math.sqrt(3)
    assert small["variance"] == pytest.approx(mean)
    assert (small["variance_low"], small["variance_high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    # bias 0, 0, 0.03: its t-interval reaches below 0, where no bias can be; the band stops at 0
    assert small["bias"] == pytest.approx(0.01) and small["bias_low"] == 0.0 and small["bias_high"] < 1
    assert large["train_acc_high"] <= 1.0
    assert small["val_acc"] == pytest.approx((0.80 + 0.84 + 0.79) / 3)  # clean train - gap, seed by seed
    assert small["verdict"] == "high variance (overfitting)" and large["verdict"] == "low bias and low variance"


def test_the_page_and_picture_are_written(tmp_path):
    write_curve("data.train_size=100,1000", ROWS, RESULTS, tmp_path, "tiny")
    page = (tmp_path / "curve.md").read_text().splitlines()
    row = next(line for line in page if line.startswith("| 100 |"))
    assert "| +0.180 [+0.130, +0.230] |" in row and "high variance (overfitting)" in row and row.endswith("| 3 |")
    assert "| +0.010 [+0.000, +0.053] |" in row  # bias: the interval cut at 0
    assert (tmp_path / "curve.png").stat().st_size > 20_000
    assert "warning" not in "\n".join(page)


def test_under_three_seeds_a_warning_and_no_interval(tmp_path):
    lines = []
    two = [r for r in RESULTS if r["seed"] in (0, 1)]
    write_curve("data.train_size=100,1000", ROWS, two, tmp_path, "tiny", echo=lines.append)
    assert len(lines) == 1 and lines[0].startswith("warning: data.train_size=100, 1000 ran on fewer than 3 seeds")
    page = (tmp_path / "curve.md").read_text()
    assert lines[0] in page and "[" not in page.split("| 100 |")[1].splitlines()[0]  # means only
    point = curve_points(ROWS, two)[0]
    assert math.isnan(point["bias_low"]) and math.isnan(point["variance_high"])
    assert (tmp_path / "curve.png").stat().st_size > 20_000


def test_no_run_that_finished_writes_nothing(tmp_path):
    write_curve("data.train_size=100", ROWS[:1], [_result(100, 0, 1, 0, 1, status="failed")], tmp_path, "tiny")
    assert not (tmp_path / "curve.md").exists()
