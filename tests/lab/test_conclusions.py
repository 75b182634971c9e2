"""The lab page's conclusions are the study's (project/lab/conclusions.py): docs/lab/conclusions.json,
copied from a real `make compare DECIDE=1`, holds each claim's per-seed differences; every
p-value, the page's threshold, every verdict, interval and probability of improvement is recomputed
here from them with scipy, conclusions.md is what the json renders, and the page shows
conclusions.md. The committed results.csv's differences and Holm marks are recomputed too."""

import csv
import json
import math
import re
from pathlib import Path

import pytest
from scipy import stats

from project.lab import sequential
from project.lab.claims import Claim, Tuning
from project.lab.conclusions import runs_used, write_conclusions
from project.lab.decide import Plan
from project.lab.sequential import EFFECT, NO_EFFECT, UNDECIDED
from project.lab.stats import MARKED

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


def test_the_committed_figures_follow_from_their_per_seed_differences():
    rows = _rows(LAB / "results.csv")
    p_values = {}
    for row in rows:
        for metric in MARKED:
            pairs = row[f"{metric}_diff_by_seed"].split()
            if len(pairs) < 2:
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
                document["alpha"], document["error"])


def _claim(item: dict) -> Claim:
    return Claim(item["claim"], item["technique"], item["metric"], item["expect"], item["against"],
                 item["margin"] if item["margin"] != _document()["margin"] else None,
                 item["looks"][-1] if item["looks"][-1] != _document()["max_seeds"] else None, item["tuned"])


def _by_scipy(diffs: list[float], expect: str, margin: float) -> dict:
    """The nominal p-values of a claim's two hypotheses, by scipy's one-sample t-tests."""
    if expect == "same":
        apart = max(stats.ttest_1samp(diffs, -margin, alternative="greater").pvalue,
                    stats.ttest_1samp(diffs, margin, alternative="less").pvalue)
        return {EFFECT: stats.ttest_1samp(diffs, 0.0).pvalue, NO_EFFECT: min(1.0, 2 * apart)}
    gain = "less" if expect == "lower" else "greater"
    short = "greater" if expect == "lower" else "less"
    edge = -margin if expect == "lower" else margin
    return {EFFECT: stats.ttest_1samp(diffs, 0.0, alternative=gain).pvalue,
            NO_EFFECT: stats.ttest_1samp(diffs, edge, alternative=short).pvalue}


def test_every_verdict_follows_from_its_per_seed_differences():
    document = _document()
    plan, claims = _plan(document), document["claims"]
    smallest = []
    for item in claims:
        diffs, looks = list(item["differences"].values()), tuple(item["looks"])
        assert [int(s) for s in item["differences"]] == item["seeds"]
        assert item["estimate"] == pytest.approx(sum(diffs) / len(diffs), abs=1e-6)
        p = _by_scipy(diffs, item["expect"], item["margin"])
        for key in (EFFECT, NO_EFFECT):
            assert item["p"][key] == pytest.approx(p[key], rel=1e-3, abs=1e-9)
            weight = (len(diffs) / looks[-1]) ** 2  # the look's share of the level
            assert item["P"][key] == pytest.approx(sequential.null_cdf(p[key] / weight, looks, item["expect"] == "same"),
                                                   rel=1e-3, abs=1e-9)
        smallest.append(min(item["P"].values()))
        assert set(item["seeds"]) <= set(plan.seeds(item["look"], _claim(item)))  # a failed run's seed drops out
    # the page's threshold: Benjamini-Hochberg by hand over every claim's smallest sequential p-value
    ranked, threshold = sorted(smallest), 0.0
    for k, value in enumerate(ranked, 1):
        if value <= plan.alpha * k / len(ranked):
            threshold = plan.alpha * k / len(ranked)
    assert document["error"] == "fdr" and document["threshold"] == pytest.approx(threshold)
    decided = 0
    for item in claims:
        rejected = {k for k, value in item["P"].items() if value <= threshold}
        assert item["verdict"] == (EFFECT if EFFECT in rejected else NO_EFFECT if rejected else UNDECIDED)
        decided += item["verdict"] != UNDECIDED
        diffs = list(item["differences"].values())
        level = item["level"]  # each side's nominal level at this look: the interval is the t-interval at 1 - 2 level
        interval = stats.ttest_1samp(diffs, 0.0).confidence_interval(1 - 2 * level)
        assert item["interval"] == [pytest.approx(interval.low, abs=1e-5), pytest.approx(interval.high, abs=1e-5)]
        better = {"unseen_acc": 1, "zero_fraction": 1}.get(item["metric"], -1)
        wins = sum(0.5 if abs(d) < 1e-9 else 1.0 if better * d > 0 else 0.0 for d in diffs)
        assert item["improvement"]["estimate"] == pytest.approx(wins / len(diffs))
        if item["verdict"] == UNDECIDED:
            assert item["look"] == len(item["looks"]) and "recheck" not in item and item["seeds_needed"]
        else:
            recheck = item["recheck"]
            assert set(recheck["seeds"]).isdisjoint(range(max(plan.seeds(len(item["looks"]), _claim(item))) + 1))
            p = _by_scipy(list(recheck["differences"].values()), item["expect"], item["margin"])
            again = {k for k, value in p.items() if value <= 0.05}  # one look, its own 95%
            assert recheck["verdict"] == (EFFECT if EFFECT in again else NO_EFFECT if again else UNDECIDED)
    assert threshold == pytest.approx(plan.alpha * decided / len(claims))


def _entries(document: dict) -> list[dict]:
    """The study's entries as write_conclusions takes them, read back from the json."""
    def figures(item: dict) -> dict:
        nan = math.nan
        return {"estimate": item["estimate"], "low": nan if item["interval"][0] is None else item["interval"][0],
                "high": nan if item["interval"][1] is None else item["interval"][1], "sd": item["sd"],
                "detectable": nan if item["detectable"] is None else item["detectable"], "seeds": item["seeds"],
                "level": item["level"], "p": item["p"], "P": item["P"],
                "differences": {int(s): d for s, d in item["differences"].items()},
                "chosen": {arm: {int(s): v for s, v in by.items()} for arm, by in item["rates"].items()}
                if "rates" in item else None}

    entries = []
    for item in document["claims"]:
        entry = {"claim": _claim(item), "verdict": item["verdict"], "within_margin": item["within_margin"],
                 "look": item["look"], "seeds_needed": item["seeds_needed"], "improvement": item["improvement"],
                 "threshold": document["threshold"], "margin": item["margin"], **figures(item)}
        if "recheck" in item:
            entry["recheck"] = {"verdict": item["recheck"]["verdict"], "held": item["recheck"]["held"],
                                "within_margin": False, **figures(item["recheck"])}
        entries.append(entry)
    return entries


def test_the_page_is_what_the_json_renders_and_the_lab_page_shows_it(tmp_path):
    document = _document()
    tune = document["tune"]
    write_conclusions(_entries(document), _plan(document), tmp_path, document["minutes"], document["command"],
                      document["baseline"], Tuning(tune["setting"], tuple(tune["values"]), tune["by"]) if tune else None,
                      document["flags"], document["noise"])
    page = (LAB / "conclusions.md").read_text()
    assert (tmp_path / "conclusions.md").read_text() == page
    block = re.search(r"<!-- figure lab-conclusions: [^>]*-->\n(.*?)<!-- end figure -->",
                      (ROOT / "docs" / "lab.md").read_text(), re.S)
    assert block and block.group(1) == page
    assert sum(c["verdict"] != UNDECIDED for c in document["claims"]) >= 17  # the bar: 17 of 19 decided
    assert document["minutes"] <= 30


def test_runs_counted_by_hand():
    plan = Plan((0, 1, 2), 3, 9)
    entry = {"estimate": 0.1, "low": 0.05, "high": 0.15, "detectable": 0.02, "level": 0.01, "differences": {}}
    tuning = Tuning("model.optimizer.init_args.lr", (0.01, 0.1), "val_acc")
    entries = [{**entry, "claim": Claim("a", "a", "gap", "lower"), "verdict": EFFECT, "look": 1, "seeds": [0, 1, 2],
                "recheck": {**entry, "verdict": EFFECT, "held": "held", "seeds": [9, 10, 11]}},
               {**entry, "claim": Claim("b", "b", "gap", "lower"), "verdict": UNDECIDED, "look": 3,
                "seeds": list(range(9))},
               {**entry, "claim": Claim("c", "c", "gap", "lower", tune=True, max_seeds=6), "verdict": UNDECIDED,
                "look": 2, "seeds": list(range(6))}]
    # a: 3 seeds; b and the baseline: 9 each; c's and the baseline's grids (2 rates each): 6 seeds;
    # the recheck: a and the baseline on 3 seeds
    assert runs_used(entries, plan, tuning) == {"sequential": 3 + 9 + 9 + 4 * 6 + 6, "fixed": 9 + 9 + 9 + 4 * 6 + 6,
                                                "recheck": 6}
