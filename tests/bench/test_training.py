import json

import pytest

from project.bench import training as bench


@pytest.mark.slow  # the quick benchmark runs every measure (about 10 s); make test-all
def test_quick_benchmark_report_has_every_measure(tmp_path):
    lines = []
    report = bench.run(bench.TINY, tmp_path, echo=lines.append)
    measures = [row["measure"] for row in report["rows"]]
    for prefix in ("1.", "2.", "3.", "4.", "5a.", "5b.", "5c.", "5d.", "5f.", "6a.", "6b.", "6c.", "7.", "8."):
        assert any(m.startswith(prefix) for m in measures), prefix
    for row in report["rows"]:  # every ratio was measured: a figure for ours and for its reference
        if row["ratio"] is not None:
            assert row["ours"] > 0 and row["reference"] > 0, row
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(report["rows"]))
    table = (tmp_path / "bench.md").read_text()
    assert table.count("\n| ") == len(report["rows"]) + 1  # header + one line per measure
    assert any("written to" in line for line in lines)
