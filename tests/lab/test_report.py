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


def test_the_claims_panel_scales_by_margin_and_marks_the_pages_verdicts():
    """Zero init's -0.82 and a -0.005 share one readable axis (in margins: -82 and -0.5), each
    claim is drawn in its verdict's style, and the no-effect band's edges carry a tick."""
    from types import SimpleNamespace

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from project.lab.report import VERDICT_STYLE, draw_claims

    def entry(claim, estimate, low, high, verdict):
        return {"claim": SimpleNamespace(claim=claim), "margin": 0.01, "estimate": estimate, "low": low,
                "high": high, "verdict": verdict, "seeds": [0, 1, 2]}

    entries = [entry("Zero init fails", -0.82, -0.9, -0.74, "effect"), entry("L2 lowers variance", -0.001, -0.008,
               0.006, "no effect"), entry("Momentum speeds up SGD", 0.035, -0.012, 0.082, "undecided")]
    fig, ax = plt.subplots()
    draw_claims(ax, entries)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert {"-30", "-10", "-3", "-1", "0", "+1", "+3"} <= set(labels) and ax.get_xscale() == "symlog"
    assert ax.get_xlim()[0] < -90  # zero init's interval (-90 margins) is inside the axis
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "Momentum speeds up SGD (n=3)", "L2 lowers variance (n=3)", "Zero init fails (n=3)"]
    points = [line for line in ax.get_lines() if len(line.get_xdata()) == 1 and line.get_label()[0] == "_"]
    drawn = {round(float(p.get_xdata()[0]), 3): (p.get_marker(), p.get_color()) for p in points}
    assert drawn[-82.0] == VERDICT_STYLE["effect"][:2] and drawn[-0.1] == VERDICT_STYLE["no effect"][:2]
    assert drawn[3.5] == VERDICT_STYLE["undecided"][:2]
    plt.close(fig)
