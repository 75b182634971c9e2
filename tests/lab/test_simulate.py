"""The design checked by simulation on the lab's own per-seed differences (project/lab/simulate.py,
on docs/lab/conclusions.json, a real `make compare DECIDE=1`): a claim's verdict is false at most
alpha of the time whatever look it stops at, a page's false discovery rate (or, with fwer, its
chance of any false verdict) stays at or under alpha, also for claims that share their baseline's
noise, and the design decides more claims than the previous one on the page's own differences."""

import json
import math
import random
from pathlib import Path

import pytest
from scipy import stats

from project.lab import sequential, simulate
from project.lab.sequential import EFFECT, NO_EFFECT, UNDECIDED

ROOT = Path(__file__).resolve().parents[2]
LOOKS = (3, 6, 9, 12)


def _claims() -> list[dict]:
    return simulate.claims_of(json.loads((ROOT / "docs" / "lab" / "conclusions.json").read_text()))


def _one_claim(shift: float, expect: str, studies: int, seed: int, naive: bool = False) -> list[dict]:
    """``studies`` claims whose differences are real standardized ones, random sign, plus ``shift``,
    each ending at the first look that decides at level 0.05 (one claim: the page's level)."""
    rng = random.Random(seed)
    pool = simulate.shapes(_claims())
    claim = {"expect": expect, "margin": 0.01, "looks": LOOKS}
    out = []
    for _ in range(studies):
        d = simulate._draws(rng, pool, shift, 0.01, LOOKS[-1])
        if naive:  # each look at the full level, no sequential correction: what the correction prevents
            ends = [sequential.test(d[:n], expect, 0.01, (n,)) for n in LOOKS]
            out.append({"verdict": EFFECT if any(e["P"][EFFECT] <= 0.05 for e in ends) else UNDECIDED})
            continue
        entry = simulate.new_design(d, claim, 0.05)
        out.append(sequential.verdict(entry, 0.05, expect, 0.01, LOOKS))
    return out


def test_the_pool_is_the_labs_own():
    pool = simulate.shapes(_claims())
    assert len(pool) >= 60 and abs(sum(pool) / len(pool)) < 0.05 and 0.8 < stats.tstd(pool) < 1.2


@pytest.mark.parametrize("expect,shift,wrong", [("lower", 0.0, EFFECT), ("lower", -0.01, NO_EFFECT),
                                                ("same", 0.0, EFFECT), ("same", 0.01, NO_EFFECT)])
def test_a_claim_on_its_boundary_is_decided_wrongly_at_most_alpha_of_the_time(expect, shift, wrong):
    studies = 1500
    rate = sum(e["verdict"] == wrong for e in _one_claim(shift, expect, studies, seed=1)) / studies
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / studies)  # alpha, and Monte Carlo's own 2 standard errors


def test_looking_without_the_correction_is_wrong_more_often():
    studies = 1500
    naive = sum(e["verdict"] == EFFECT for e in _one_claim(0.0, "lower", studies, seed=2, naive=True)) / studies
    assert naive > 0.08


def test_the_pages_error_stays_at_alpha_with_every_claim_on_a_boundary():
    """fdr: the expected share of false verdicts; fwer: the chance of any; both at most alpha (with
    Monte Carlo's 2 standard errors over 120 pages). And the gain, on the page's own estimates:
    fdr decides more claims than fwer, which decides more than the previous design."""
    designs = simulate.simulate(_claims(), pages=120, seed=4)["designs"]
    assert designs["fdr"]["false_discovery_rate"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 120)
    assert designs["fwer"]["any_false"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 120)
    assert designs["fdr"]["decided"] > designs["fwer"]["decided"] > designs["previous"]["decided"]


def test_claims_sharing_their_baselines_noise_keep_the_rate():
    """Claims measured against one baseline share its seed-to-seed noise: their differences move
    together. Every claim of a 19-claim page on a boundary, the baseline's noise as large as each
    experiment's own: the false discovery rate stays at alpha."""
    rng = random.Random(5)
    claims = [dict(c, sd=0.01, sd_former=0.01) for c in _claims()]
    pool = simulate.shapes(claims)
    rates = []
    for _ in range(150):
        truths = simulate.boundaries(claims, rng)
        base = simulate._draws(rng, pool, 0.0, 0.007, 12)
        drawn = [[t + e - b for e, b in zip(simulate._draws(rng, pool, 0.0, 0.007, 12), base)] for t in truths]
        verdicts = simulate.decide_page(drawn, claims, 0.05)
        made = sum(v["verdict"] != UNDECIDED for v in verdicts)
        wrong = sum(simulate.false(v, c, t) for v, c, t in zip(verdicts, claims, truths))
        rates.append(wrong / made if made else 0.0)
    assert sum(rates) / len(rates) <= 0.05 + 0.02
