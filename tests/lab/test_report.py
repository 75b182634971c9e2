"""The study's table and figure from hand-made results."""

import pytest

from project.lab.report import write_report, write_tables
from project.lab.stats import METRICS, summarize


def _run(name, seed, test_acc, curve):
    return {"experiment": name, "seed": seed, "status": "ok", "reason": "", "test_acc": test_acc, "gap": 0.05,
            **{m: 0.5 for m in METRICS if m not in ("test_acc", "gap")},
            "val_acc_curve": curve, "train_acc_curve": [min(1.0, v + 0.05) for v in curve]}


def test_the_table_and_report_show_every_experiment(tmp_path):
    results = [_run("baseline", s, 0.90 + s / 100, [0.5, 0.7, 0.8]) for s in range(3)]
    results += [_run("dropout", s, 0.95 + s / 100, [0.6, 0.8, 0.9]) for s in range(3)]
    results.append({"experiment": "broken", "seed": 0, "status": "failed", "reason": "exit 2: bad"})
    rows = summarize(results, ["baseline", "dropout", "broken"])
    write_tables(rows, tmp_path, [0, 1, 2], "both")
    table = (tmp_path / "results.md").read_text().splitlines()
    dropout = next(line for line in table if line.startswith("| dropout |"))
    assert "| 0.960 ± 0.025 | +0.050 ± 0.000 * |" in dropout  # 0.05 better on every seed: the paired difference
    assert any(line.startswith("| broken | failed: exit 2: bad") for line in table)
    write_report(rows, results, tmp_path, "a study")
    assert (tmp_path / "report.png").stat().st_size > 20_000
    assert (tmp_path / "results.csv").read_text().count("\n") == 4


@pytest.mark.parametrize("shown", [[]])
def test_no_successful_run_draws_nothing(tmp_path, shown):
    write_report([{"experiment": "x", "runs_ok": 0}], shown, tmp_path, "empty")
    assert not (tmp_path / "report.png").exists()
