"""The lab that decides (project/lab/decide.py): the claims file checked line by line, the plan's
seeds, a claim that stops costing runs once decided, and, by simulation on the real per-seed
differences of docs/lab/results.csv, that stopping at whichever look decides keeps the error rates:
identical arms give a false effect at most 5% of the time (and looking without the correction gives
more), equal arms reach no effect with enough seeds, and a known shift is found inside its interval."""

import csv
import math
import random
from pathlib import Path

import pytest

from project.errors import SettingError
from project.lab.compare import available_experiments
from project.lab.decide import (
    CLAIMS_FILE,
    CONTRADICTED,
    HELD,
    NOT_CONFIRMED,
    Claim,
    Plan,
    answer,
    decide,
    experiments_of,
    load_claims,
    recheck,
)
from project.lab.stats import EFFECT, NO_EFFECT, UNDECIDED, sequential, verdict

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_claims_answer_the_lecture():
    claims = load_claims(CLAIMS_FILE, available_experiments())
    named = {c.experiment for c in claims} | {c.against for c in claims}
    for technique in ("l1", "l2", "weight_decay", "dropout", "early_stopping", "augment", "batchnorm", "groupnorm",
                      "init_zeros", "init_constant", "init_xavier_normal", "opt_sgd", "opt_momentum", "sched_cosine",
                      "data.train_size=1000", "model.net.init_args.width=0.25", "penalty.l2=0.05"):
        assert technique in named
    assert {c.metric for c in claims if c.experiment == "l1"} == {"zero_fraction", "test_acc"}
    assert experiments_of(claims)[0] == "baseline" and len(set(experiments_of(claims))) == len(experiments_of(claims))


BAD_CLAIMS = [
    ("claims: []", "--claims"),
    ("claims: [{claim: x, experiment: nope, metric: gap, expect: lower}]", "claims[0].experiment=nope"),
    ("claims: [{claim: x, experiment: l2, against: nope, metric: gap, expect: lower}]", "claims[0].against=nope"),
    ("claims: [{claim: x, experiment: l2, metric: gapp, expect: lower}]", "claims[0].metric=gapp"),
    ("claims: [{claim: x, experiment: l2, metric: gap, expect: less}]", "claims[0].expect=less"),
    ("claims: [{claim: x, experiment: l2, metric: gap}]", "lacks expect"),
    ("claims: [{claim: x, experiment: l2, metric: gap, expect: lower, seeds: 3}]", "has seeds"),
    ("claims: [{claim: x, experiment: l2, against: l2, metric: gap, expect: lower}]", "claims[0].against=l2"),
    ("claims:\n - {claim: x, experiment: l2, metric: gap, expect: lower}\n - {claim: y, experiment: l2, metric: gap, "
     "expect: higher}", "claims[1]=y"),
    ("claims: [oops", "does not parse"),
]


@pytest.mark.parametrize("text,named", BAD_CLAIMS, ids=[n for _, n in BAD_CLAIMS])
def test_a_bad_claims_file_is_one_line_naming_the_entry(tmp_path, text, named):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(SettingError) as error:
        load_claims(path, available_experiments())
    assert named in str(error.value) and "\n" not in str(error.value)


def test_the_plan_adds_rounds_of_seeds_and_rechecks_on_seeds_it_never_uses():
    plan = Plan((0, 1, 2), 3, 12)
    assert plan.looks == 4
    assert [plan.seeds(k) for k in (1, 2, 4)] == [[0, 1, 2], [0, 1, 2, 3, 4, 5], list(range(12))]
    assert plan.recheck_seeds() == [12, 13, 14]
    odd = Plan((7, 3), 4, 7)
    assert odd.looks == 3 and odd.seeds(2) == [7, 3, 8, 9, 10, 11] and odd.seeds(3) == [7, 3, 8, 9, 10, 11, 12]
    for bad, named in ((Plan((0,), 3, 12), "--seeds=0"), (Plan((0, 1, 2), 0, 12), "--round=0"),
                       (Plan((0, 1, 2), 3, 2), "--max-seeds=2"), (Plan((0, 1, 2), 3, 12, 0.0), "--margin=0.0"),
                       (Plan((4294967293, 4294967294, 4294967295), 3, 3), "--max-seeds=3")):
        with pytest.raises(SettingError, match=named.replace("[", r"\[")):
            bad.check()


def test_verdicts_by_hand():
    from scipy import stats

    d = [0.03, 0.05, 0.04, 0.06]
    v = verdict(d, 0.01, 0.05)
    interval = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert (v["low"], v["high"]) == (pytest.approx(interval.low), pytest.approx(interval.high))
    assert v["verdict"] == EFFECT and v["estimate"] == pytest.approx(0.045)
    assert verdict([0.001, -0.001, 0.002, 0.0, -0.002], 0.01, 0.05)["verdict"] == NO_EFFECT
    wide = verdict([0.03, -0.02, 0.01], 0.01, 0.05)
    sd = stats.tstd([0.03, -0.02, 0.01])
    assert wide["verdict"] == UNDECIDED  # (t_0.975 + t_0.8) sd / sqrt(n): what 3 seeds could have seen
    assert wide["detectable"] == pytest.approx((stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * sd / math.sqrt(3))
    assert verdict([0.5], 0.01, 0.05)["verdict"] == UNDECIDED  # one seed: no interval


def test_a_decided_claim_costs_no_more_runs():
    """A fake study: 'big' moves the figure by 0.3 on every seed; 'same' by noise around 0."""
    rng = random.Random(0)
    asked = []

    def run(pairs):
        asked.extend(pairs)
        for e, s in pairs:
            noise = {"big": 0.3 + rng.gauss(0, 0.003), "same": rng.gauss(0, 0.02)}.get(e, 0.0)
            results.setdefault((e, s), {"status": "ok", "test_acc": 0.5 + noise})
        return dict(results)

    results = {}
    claims = [Claim("big helps", "big", "test_acc", "higher"), Claim("same is the same", "same", "test_acc", "same")]
    entries, _ = decide(claims, Plan((0, 1, 2), 3, 9), run, echo=lambda line: None)
    big, same = entries
    assert big["verdict"] == EFFECT and big["look"] == 1 and big["seeds"] == [0, 1, 2]
    assert {s for e, s in asked if e == "big"} == {0, 1, 2, 9, 10, 11}  # the first round, then the recheck only
    assert same["verdict"] == UNDECIDED and same["look"] == 3 and same["seeds"] == list(range(9))
    assert big["recheck"]["held"] == HELD and "recheck" not in same
    assert answer(big, 0.01) == f"yes: higher by {big['estimate']:.3f}"
    assert answer(same, 0.01).startswith("undecided: these seeds would see a difference of")


def test_recheck_labels():
    effect = {"verdict": EFFECT, "estimate": -0.03}
    assert recheck(effect, {"verdict": EFFECT, "estimate": -0.02}, 0.01) == HELD
    assert recheck(effect, {"verdict": EFFECT, "estimate": 0.02}, 0.01) == CONTRADICTED
    assert recheck(effect, {"verdict": UNDECIDED, "estimate": -0.02}, 0.01) == NOT_CONFIRMED
    none = {"verdict": NO_EFFECT, "estimate": 0.001}
    assert recheck(none, {"verdict": UNDECIDED, "estimate": 0.004}, 0.01) == HELD
    assert recheck(none, {"verdict": UNDECIDED, "estimate": 0.02}, 0.01) == NOT_CONFIRMED
    assert recheck(none, {"verdict": EFFECT, "estimate": 0.05}, 0.01) == CONTRADICTED


# --- the sequential plan by simulation, on real numbers ------------------------------------------

def _real_differences() -> list[float]:
    """The lab's own per-seed differences (docs/lab/results.csv, a real `make compare DECIDE=1`), each
    experiment's centred on its mean: the seed-to-seed spread of a real comparison, without its effect."""
    pool = []
    with open(ROOT / "docs" / "lab" / "results.csv") as f:
        for row in csv.DictReader(f):
            for metric in ("test_acc", "gap"):
                values = [float(p.split(":")[1]) for p in row[f"{metric}_diff_by_seed"].split()]
                if len(values) >= 3 and max(values) - min(values) < 0.2:  # not a failed init's spread
                    mean = sum(values) / len(values)
                    pool += [v - mean for v in values]
    return pool


def _simulate(shift: float, plan: Plan, studies: int, alpha_per_look=None, seed: int = 0) -> list[dict]:
    """``studies`` comparisons of two arms that differ by ``shift``: each seed's difference is a real
    centred difference with a random sign (identical arms: a difference and its negative are equally
    likely), plus the shift; each study ends at the first look that decides."""
    rng = random.Random(seed)
    pool = _real_differences()
    out = []
    for _ in range(studies):
        d = [rng.choice(pool) * rng.choice((-1, 1)) + shift for _ in range(plan.max_seeds)]
        rounds = [d[:len(plan.seeds(k))] for k in range(1, plan.looks + 1)]
        if alpha_per_look is None:
            out.append(sequential(rounds, plan.margin, plan.alpha, plan.looks))
        else:  # the naive way: each look at the full alpha
            out.append(sequential(rounds, plan.margin, alpha_per_look * plan.looks, plan.looks))
    return out


def test_identical_arms_give_a_false_effect_at_most_alpha_of_the_time():
    assert len(_real_differences()) >= 30 and 0.003 < (sum(v * v for v in _real_differences()) / len(
        _real_differences())) ** 0.5 < 0.05
    plan, studies = Plan((0, 1, 2), 3, 12), 3000
    false = sum(e["verdict"] == EFFECT for e in _simulate(0.0, plan, studies)) / studies
    assert false <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / studies)  # alpha, and Monte Carlo's own 2 standard errors
    naive = sum(e["verdict"] == EFFECT for e in _simulate(0.0, plan, studies, alpha_per_look=0.05)) / studies
    assert naive > 0.07 and naive > 2 * false  # four uncorrected looks: the error the correction prevents


def test_equal_arms_reach_no_effect_with_enough_seeds():
    plan = Plan((0, 1, 2), 3, 90)  # up to 90 seeds, 30 looks
    ends = _simulate(0.0, plan, 400, seed=1)
    assert sum(e["verdict"] == NO_EFFECT for e in ends) / len(ends) >= 0.8
    assert sum(e["verdict"] == EFFECT for e in ends) / len(ends) <= 0.05
    assert sum(e["n"] for e in ends) / len(ends) < 90  # and they stop early, on average


@pytest.mark.parametrize("shift", [0.03, -0.05])
def test_a_known_shift_is_found_inside_its_interval(shift):
    ends = _simulate(shift, Plan((0, 1, 2), 3, 12), 1000, seed=2)
    found = [e for e in ends if e["verdict"] == EFFECT]
    assert len(found) / len(ends) >= 0.8  # one-point-scale effects are what the plan is for
    assert all(math.copysign(1, e["estimate"]) == math.copysign(1, shift) for e in found)
    assert sum(e["low"] <= shift <= e["high"] for e in found) / len(found) >= 0.95
