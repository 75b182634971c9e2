"""The lab page's conclusions are the study's (project/lab/conclusions.py): docs/lab/conclusions.json,
copied from a real `make compare DECIDE=1`, holds each claim's per-seed differences; every estimate,
interval and verdict is recomputed here from them, conclusions.md is what the json renders, and the
page shows conclusions.md. The committed results.csv's differences and Holm marks are recomputed too."""

import csv
import json
import math
import re
from pathlib import Path

import pytest
from scipy import stats

from project.lab.conclusions import runs_used, write_conclusions
from project.lab.decide import Claim, Plan
from project.lab.stats import EFFECT, MARKED, NO_EFFECT, UNDECIDED

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


def test_the_committed_figures_follow_from_their_per_seed_differences():
    rows = _rows(LAB / "results.csv")
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


def _document() -> dict:
    return json.loads((LAB / "conclusions.json").read_text())


def _plan(document: dict) -> Plan:
    return Plan(tuple(document["first_seeds"]), document["round"], document["max_seeds"], document["margin"],
                document["alpha"])


def _check(figures: dict, margin: float, level: float) -> str:
    """The figures' estimate and interval from their differences, by scipy; returns the verdict they imply."""
    diffs = list(figures["differences"].values())
    assert [int(s) for s in figures["differences"]] == figures["seeds"]
    assert figures["level"] == pytest.approx(level)
    assert figures["estimate"] == pytest.approx(sum(diffs) / len(diffs), abs=1e-6)
    if stats.tstd(diffs) == 0:
        low = high = figures["estimate"]
    else:
        interval = stats.ttest_1samp(diffs, 0.0).confidence_interval(level)
        low, high = interval.low, interval.high
    assert figures["interval"] == [pytest.approx(low, abs=1e-5), pytest.approx(high, abs=1e-5)]
    return EFFECT if low > 0 or high < 0 else NO_EFFECT if -margin <= low and high <= margin else UNDECIDED


def test_every_verdict_follows_from_its_per_seed_differences():
    document = _document()
    plan = _plan(document)
    claims = document["claims"]
    for claim in claims:
        for key in ("claim", "technique", "metric", "verdict", "estimate", "interval", "margin", "seeds", "command"):
            assert key in claim
        level = 1 - plan.alpha / (len(claims) * plan.looks)  # Bonferroni over the claims and the looks
        assert _check(claim, plan.margin, level) == claim["verdict"]
        assert set(claim["seeds"]) <= set(plan.seeds(claim["look"]))  # a failed run's seed drops out
        if claim["verdict"] == UNDECIDED:
            assert claim["look"] == plan.looks and "recheck" not in claim  # every look was spent on it
        else:
            recheck = claim["recheck"]
            assert set(recheck["seeds"]).isdisjoint(range(max(plan.seeds(plan.looks)) + 1))
            assert _check(recheck, plan.margin, 1 - plan.alpha) == recheck["verdict"]


def _entries(document: dict) -> list[dict]:
    def figures(item: dict) -> dict:
        return {"estimate": item["estimate"] if item["estimate"] is not None else math.nan,
                "low": math.nan if item["interval"][0] is None else item["interval"][0],
                "high": math.nan if item["interval"][1] is None else item["interval"][1],
                "detectable": math.nan if item["detectable"] is None else item["detectable"],
                "seeds": item["seeds"], "level": 1 - item["level"],
                "differences": {int(s): d for s, d in item["differences"].items()}}

    entries = []
    for item in document["claims"]:
        claim = Claim(item["claim"], item["technique"], item["metric"], item["expect"], item["against"])
        entry = {"claim": claim, "verdict": item["verdict"], "look": item["look"], **figures(item)}
        if "recheck" in item:
            entry["recheck"] = {"verdict": item["recheck"]["verdict"], "held": item["recheck"]["held"],
                                **figures(item["recheck"])}
        entries.append(entry)
    return entries


def test_the_page_is_what_the_json_renders_and_the_lab_page_shows_it(tmp_path):
    document = _document()
    write_conclusions(_entries(document), _plan(document), tmp_path, document["minutes"], document["command"])
    page = (LAB / "conclusions.md").read_text()
    assert (tmp_path / "conclusions.md").read_text() == page
    block = re.search(r"<!-- figure lab-conclusions: [^>]*-->\n(.*?)<!-- end figure -->",
                      (ROOT / "docs" / "lab.md").read_text(), re.S)
    assert block and block.group(1) == page
    assert "not claimed" not in page


def test_runs_counted_by_hand():
    plan = Plan((0, 1, 2), 3, 9)
    entry = {"estimate": 0.1, "low": 0.05, "high": 0.15, "detectable": 0.02, "level": 0.01, "differences": {}}
    entries = [{**entry, "claim": Claim("a", "a", "gap", "lower"), "verdict": EFFECT, "look": 1, "seeds": [0, 1, 2],
                "recheck": {**entry, "verdict": EFFECT, "held": "held", "seeds": [9, 10, 11]}},
               {**entry, "claim": Claim("b", "b", "gap", "lower"), "verdict": UNDECIDED, "look": 3,
                "seeds": list(range(9))}]
    # a: 3 seeds; b and the baseline: 9 each; the recheck: a and the baseline on 3 seeds
    assert runs_used(entries, plan) == {"sequential": 3 + 9 + 9 + 6, "fixed": 3 * 9 + 6, "recheck": 6}
