"""The lab page's conclusions are the study's: the lab-conclusions figure in docs/lab.md equals
docs/lab/conclusions.md, which is what the committed results files (docs/lab/results*.csv, copied
from a real `make compare REPLICATE=1`) imply, recomputed here from their per-seed differences."""

import csv
import math
import re
from pathlib import Path

import pytest
from scipy import stats

from project.lab.report import conclusions
from project.lab.stats import MARKED, replication

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "docs" / "lab"


def _rows(path: Path) -> list[dict]:
    def value(text: str):
        if text in ("True", "False"):
            return text == "True"
        try:
            return float(text)
        except ValueError:
            return text
    with open(path) as f:
        return [{k: (v if k in ("experiment", "seeds", "failure") or k.endswith("_by_seed") else value(v))
                 for k, v in row.items()} for row in csv.DictReader(f)]


def _seeds(rows: list[dict]) -> list[int]:
    return sorted({int(s) for s in rows[0]["seeds"].split()})


@pytest.mark.parametrize("name", ["results.csv", "results_replicate.csv"])
def test_the_committed_figures_follow_from_their_per_seed_differences(name):
    rows = _rows(LAB / name)
    p_values = {}
    for row in rows:
        for metric in MARKED:
            pairs = row[f"{metric}_diff_by_seed"].split()
            if not pairs:
                continue
            diffs = [float(p.split(":")[1]) for p in pairs]
            test = stats.ttest_1samp(diffs, 0.0)
            interval = test.confidence_interval(0.95)
            assert row[f"{metric}_diff_mean"] == pytest.approx(sum(diffs) / len(diffs), abs=1e-6)
            assert row[f"{metric}_diff_ci95"] == pytest.approx((interval.high - interval.low) / 2, abs=1e-6)
            p = test.pvalue if not math.isnan(test.pvalue) else (0.0 if any(diffs) else 1.0)
            assert row[f"{metric}_diff_p"] == pytest.approx(p, rel=1e-3, abs=1e-12)  # differences kept to 6 digits
            p_values[(row["experiment"], metric)] = p
    # Holm by hand: the k-th smallest of m times (m - k), never below the one before; a mark below 0.05
    running, m = 0.0, len(p_values)
    for k, (key, p) in enumerate(sorted(p_values.items(), key=lambda item: item[1])):
        running = max(running, min(1.0, (m - k) * p))
        row = next(r for r in rows if r["experiment"] == key[0])
        assert row[f"{key[1]}_diff_p_holm"] == pytest.approx(running, rel=1e-3, abs=1e-12)
        assert row[f"{key[1]}_differs"] == (running < 0.05)


def test_the_lab_page_states_what_the_study_replicated():
    first, second = _rows(LAB / "results.csv"), _rows(LAB / "results_replicate.csv")
    implied = conclusions(replication(first, second), _seeds(first), _seeds(second))
    assert (LAB / "conclusions.md").read_text().splitlines() == implied
    page = (ROOT / "docs" / "lab.md").read_text()
    block = re.search(r"<!-- figure lab-conclusions: [^>]*-->\n(.*?)\n<!-- end figure -->", page, re.S)
    assert block, "docs/lab.md has no lab-conclusions figure"
    assert block.group(1).splitlines() == implied
