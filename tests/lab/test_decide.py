"""The lab that decides (project/lab/decide.py): the plan's seeds, a claim that stops costing runs
once decided, tuned arms that keep their best rate by validation seed by seed, a claim's own margin
and seed cap, the recheck on seeds the plan never uses, and the answers in the lecture's words."""

import math
import random

import pytest

from project.errors import SettingError
from project.lab.claims import Claim, Tuning
from project.lab.decide import (
    CONTRADICTED,
    HELD,
    NOT_CONFIRMED,
    Plan,
    answer,
    arm_result,
    decide,
    experiments_of,
    recheck,
)
from project.lab.sequential import EFFECT, NO_EFFECT, UNDECIDED


def test_the_plan_adds_rounds_of_seeds_and_rechecks_on_seeds_it_never_uses():
    plan = Plan((0, 1, 2), 3, 12)
    assert plan.looks() == 4 and plan.sizes() == (3, 6, 9, 12)
    assert [plan.seeds(k) for k in (1, 2, 4)] == [[0, 1, 2], [0, 1, 2, 3, 4, 5], list(range(12))]
    assert plan.recheck_seeds() == [12, 13, 14]
    capped = Claim("c", "x", "test_acc", "lower", max_seeds=6)
    assert plan.looks(capped) == 2 and plan.sizes(capped) == (3, 6) and plan.seeds(4, capped) == list(range(6))
    longer = Claim("c", "x", "test_acc", "lower", max_seeds=20)
    assert plan.recheck_seeds([capped, longer]) == [20, 21, 22]  # after every seed any claim may use
    odd = Plan((7, 3), 4, 7)
    assert odd.looks() == 3 and odd.seeds(2) == [7, 3, 8, 9, 10, 11] and odd.seeds(3) == [7, 3, 8, 9, 10, 11, 12]
    for bad, named in ((Plan((0,), 3, 12), "--seeds=0"), (Plan((0, 1, 2), 0, 12), "--round=0"),
                       (Plan((0, 1, 2), 3, 2), "--max-seeds=2"), (Plan((0, 1, 2), 3, 12, 0.0), "--margin=0.0"),
                       (Plan((4294967293, 4294967294, 4294967295), 3, 3), "--max-seeds=3")):
        with pytest.raises(SettingError, match=named.replace("[", r"\[")):
            bad.check()
    with pytest.raises(SettingError, match=r"claims\[0\].max_seeds=2"):
        Plan((0, 1, 2), 3, 12).check([Claim("c", "x", "test_acc", "lower", max_seeds=2)])


def _fake(effects: dict, noise: dict, seed: int = 0):
    """A fake study: each experiment's figure is 0.5 plus its effect plus noise, per seed; a tuned
    grid point's by its rate (``lr=``), best near 0.01 for adam and 0.1 for sgd."""
    rng = random.Random(seed)
    results, asked = {}, []

    def run(pairs):
        asked.extend(pairs)
        for e, s in pairs:
            value = 0.5 + effects.get(e.split("+")[0], 0.0) + rng.gauss(0, noise.get(e.split("+")[0], 0.003))
            if "+" in e:
                rate = float(e.rsplit("=", 1)[1])
                best = {"adam": 0.01, "sgd": 0.1}[e.split("+")[0]]
                value -= 0.05 * abs(math.log10(rate / best))
            results.setdefault((e, s), {"status": "ok", "test_acc": value, "val_acc": value, "gap": 0.0})
        return dict(results)

    return run, results, asked


def test_a_decided_claim_costs_no_more_runs_and_is_rechecked():
    run, _, asked = _fake({"big": 0.3, "same": 0.0}, {"same": 0.02})
    claims = [Claim("big helps", "big", "test_acc", "higher"), Claim("same is the same", "same", "test_acc", "same")]
    entries, _ = decide(claims, Plan((0, 1, 2), 3, 9), run, echo=lambda line: None)
    big, same = entries
    assert big["verdict"] == EFFECT and big["look"] == 1 and big["seeds"] == [0, 1, 2]
    assert {s for e, s in asked if e == "big"} == {0, 1, 2, 9, 10, 11}  # the first round, then the recheck only
    assert same["verdict"] == UNDECIDED and same["look"] == 3 and same["seeds"] == list(range(9))
    assert big["recheck"]["held"] == HELD and "recheck" not in same
    assert answer(big, 0.01) == f"yes: higher by {big['estimate']:.3f}"
    assert answer(same, 0.01).startswith("undecided: about") and same["seeds_needed"] > 9
    assert big["improvement"]["estimate"] == 1.0 and big["threshold"] > 0


def test_a_tuned_arm_keeps_its_best_rate_by_validation_on_each_seed():
    run, results, asked = _fake({"adam": 0.1, "sgd": 0.0}, {})
    tuning = Tuning("model.optimizer.init_args.lr", (0.001, 0.01, 0.1), "val_acc")
    claim = Claim("sgd learns less", "sgd", "test_acc", "lower", against="adam", tune=True, max_seeds=6)
    assert experiments_of([claim], tuning) == [f"{a}+model.optimizer.init_args.lr={v}" for a in ("sgd", "adam")
                                               for v in (0.001, 0.01, 0.1)]
    entries, _ = decide([claim], Plan((0, 1, 2), 3, 12), run, echo=lambda line: None, tuning=tuning)
    entry = entries[0]
    assert entry["verdict"] == EFFECT and set(entry["chosen"]) == {"sgd", "adam"}
    assert set(entry["chosen"]["sgd"].values()) == {0.1} and set(entry["chosen"]["adam"].values()) == {0.01}
    for seed, difference in entry["differences"].items():  # the kept runs' own figures
        sgd, adam = results[("sgd+model.optimizer.init_args.lr=0.1", seed)], results[("adam+model.optimizer.init_args.lr=0.01", seed)]
        assert difference == pytest.approx(sgd["test_acc"] - adam["test_acc"])
    assert {s for _, s in asked} - {12, 13, 14} <= set(range(6)) and entry["recheck"]["chosen"]  # capped at 6
    # a grid point that failed is not chosen; all failed: the seed drops out
    results[("sgd+model.optimizer.init_args.lr=0.1", 0)] = {"status": "failed", "reason": "nan"}
    assert arm_result(results, "sgd", 0, claim, tuning)[1] == 0.01
    for rate in (0.001, 0.01):
        results[(f"sgd+model.optimizer.init_args.lr={rate}", 0)] = {"status": "failed", "reason": "nan"}
    assert arm_result(results, "sgd", 0, claim, tuning) == (None, None)


def test_a_claims_own_margin_decides_what_the_studys_cannot():
    """Equal arms (noise 0.03): no effect beyond a margin of 0.05 is within reach of 12 seeds; beyond
    0.01 it is not."""
    for margin, verdict in ((0.05, NO_EFFECT), (None, UNDECIDED)):
        run, _, _ = _fake({}, {"x": 0.03}, seed=3)
        claim = Claim("x changes nothing", "x", "test_acc", "same", margin=margin)
        entry = decide([claim], Plan((0, 1, 2), 3, 12), run, echo=lambda line: None)[0][0]
        assert entry["verdict"] == verdict and entry["margin"] == (margin or 0.01)


def test_recheck_labels():
    effect = {"verdict": EFFECT, "estimate": -0.03}
    assert recheck(effect, {"verdict": EFFECT, "estimate": -0.02}) == HELD
    assert recheck(effect, {"verdict": EFFECT, "estimate": 0.02}) == CONTRADICTED  # a claim of no difference's effect
    assert recheck(effect, {"verdict": UNDECIDED, "estimate": -0.02}) == NOT_CONFIRMED
    assert recheck(effect, {"verdict": NO_EFFECT, "estimate": 0.001}) == CONTRADICTED
    none = {"verdict": NO_EFFECT, "estimate": 0.001}
    assert recheck(none, {"verdict": NO_EFFECT, "estimate": -0.004}) == HELD
    assert recheck(none, {"verdict": UNDECIDED, "estimate": 0.02}) == NOT_CONFIRMED


@pytest.mark.parametrize("expect,verdict,estimate,within,said", [
    ("lower", EFFECT, -0.033, False, "yes: lower by 0.033"),
    ("lower", EFFECT, -0.004, True, "yes: lower by 0.004, less than the margin"),
    ("lower", NO_EFFECT, -0.002, False, "no: not lower by 0.01 or more"),
    ("higher", NO_EFFECT, -0.016, False, "no: not higher by 0.01 or more (the estimate: lower by 0.016)"),
    ("same", NO_EFFECT, 0.002, False, "yes: no difference beyond ±0.01"),
    ("same", EFFECT, -0.009, False, "no: lower by 0.009"),
])
def test_answers_in_the_lectures_words(expect, verdict, estimate, within, said):
    entry = {"claim": Claim("c", "x", "test_acc", expect), "verdict": verdict, "estimate": estimate,
             "within_margin": within, "detectable": 0.02, "seeds_needed": None}
    assert answer(entry, 0.01) == said
