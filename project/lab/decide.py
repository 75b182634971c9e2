"""The lab that decides: every claim of a claims file (``configs/lab/lecture.yaml``) answered with
an effect and its size, no effect beyond a margin, or undecided, seeds added in rounds until it is.

    python -m project.lab --until-decided                # make compare DECIDE=1
    python -m project.lab --until-decided --max-seeds 20 --margin 0.02 --claims my_claims.yaml

A claim is one comparison: an experiment minus the baseline (or the claim's ``against``) on the
same seeds, on one figure of the tested weights (project.lab.claims). The plan runs the first seeds
(0-2) for every claim, then adds a round of seeds (3 more) to the claims still undecided, up to
``--max-seeds`` (or the claim's own ``max_seeds``); a decided claim costs no more runs. A claim
with ``tune: true`` runs each of its two arms at every value of the file's learning-rate grid on
each seed and keeps, per seed, the run with the best validation accuracy: both arms at their own
rate, chosen with the same grid and budget, the test split unseen (nested).

The statistics (project.lab.sequential): each claim's two hypotheses tested at every look with a
sequential p-value; a claim stops once that is at most alpha / claims; at the end
Benjamini-Hochberg over the claims decides each claim whose p-value is at most alpha R / claims:
a false discovery rate of at most alpha over the page's verdicts. Each decided claim is then
rechecked on seeds disjoint from every seed the plan could use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from project.errors import fail
from project.lab import sequential
from project.lab.claims import FIGURES, Claim, Tuning
from project.lab.sequential import EFFECT, NO_EFFECT, UNDECIDED
from project.run.checks import MAX_SEED

ALPHA = 0.05
MARGIN = 0.01  # one point of accuracy: 10 of 1,000 images, about one baseline seed-to-seed sd
HELD, NOT_CONFIRMED, CONTRADICTED = "held", "not confirmed", "contradicted"
RECHECK_ALPHA = 0.05  # each recheck on its own: a confirmation of one stated result
ERRORS = ("fdr", "fwer")  # what alpha bounds: the page's false discovery rate, or its chance of any false verdict


def arms(claim: Claim, tuning: Tuning | None) -> list[str]:
    """The experiments one seed of the claim needs: its two arms, or their grid points when tuned."""
    return [p for arm in (claim.experiment, claim.against)
            for p in (tuning.points(arm) if claim.tune and tuning else [arm])]


def experiments_of(claims: list[Claim], tuning: Tuning | None = None) -> list[str]:
    """Every experiment the claims need, the baseline first."""
    names = dict.fromkeys(["baseline"] if any(not c.tune and "baseline" in (c.experiment, c.against)
                                              for c in claims) else [])
    for claim in claims:
        names |= dict.fromkeys(arms(claim, tuning))
    return list(names)


@dataclass(frozen=True)
class Plan:
    """Seeds until decided: ``first`` seeds for every claim, then ``round`` more a look for those
    still undecided, at most ``max_seeds`` each (a claim's own ``max_seeds`` replaces it);
    ``margin`` the equivalence margin (a claim's own replaces it); ``alpha`` the level of ``error``:
    ``fdr``, the page's false discovery rate (Benjamini-Hochberg at the end), or ``fwer``, the chance
    of any false verdict on the page (Bonferroni over the claims)."""
    first: tuple[int, ...]
    round: int
    max_seeds: int
    margin: float = MARGIN
    alpha: float = ALPHA
    error: str = "fdr"

    def check(self, claims: list[Claim] = ()) -> None:
        if len(self.first) < 2:
            fail("--seeds", ",".join(map(str, self.first)), "at least 2 seeds for the first round (3 or more advised)")
        if not (isinstance(self.round, int) and self.round >= 1):
            fail("--round", self.round, "an integer >= 1 (seeds added a look)")
        if not (isinstance(self.max_seeds, int) and self.max_seeds >= max(2, len(self.first))):
            fail("--max-seeds", self.max_seeds, f"an integer >= the first round's {len(self.first)} seeds and >= 2")
        if not (isinstance(self.margin, float) and 0 < self.margin < 1):
            fail("--margin", self.margin, "a number in (0, 1), e.g. 0.01 (one point of accuracy)")
        if self.error not in ERRORS:
            fail("--error", self.error, ", ".join(ERRORS))
        for i, claim in enumerate(claims):
            if claim.max_seeds is not None and claim.max_seeds < len(self.first):
                fail(f"claims[{i}].max_seeds", claim.max_seeds, f"an integer >= the first round's {len(self.first)} seeds",
                     "is fewer than the first round gives every claim")
        last = self.recheck_seeds(claims)[-1]
        if last > MAX_SEED:
            fail("--max-seeds", self.max_seeds, f"a plan whose seeds and recheck seeds stay <= {MAX_SEED}",
                 f"reaches seed {last}")

    def cap(self, claim: Claim | None = None) -> int:
        return claim.max_seeds if claim is not None and claim.max_seeds is not None else self.max_seeds

    def margin_of(self, claim: Claim) -> float:
        return self.margin if claim.margin is None else claim.margin

    def looks(self, claim: Claim | None = None) -> int:
        return 1 + math.ceil(max(0, self.cap(claim) - len(self.first)) / self.round)

    def sizes(self, claim: Claim | None = None) -> tuple[int, ...]:
        """The number of seeds at each of the claim's looks."""
        return tuple(len(self.seeds(k, claim)) for k in range(1, self.looks(claim) + 1))

    def _pool(self, count: int) -> list[int]:
        pool, seed = list(self.first), max(self.first) + 1
        while len(pool) < count:
            pool.append(seed)
            seed += 1
        return pool[:count]

    def seeds(self, look: int, claim: Claim | None = None) -> list[int]:
        """The seeds a claim has at look ``look`` (1 = the first round)."""
        return self._pool(min(self.cap(claim), len(self.first) + (look - 1) * self.round))

    def recheck_seeds(self, claims: list[Claim] = ()) -> list[int]:
        """As many seeds as the first round (at least 3), after every seed the plan can use."""
        start = max(self._pool(max([self.cap(c) for c in claims] + [self.max_seeds]))) + 1
        return list(range(start, start + max(3, len(self.first))))


def from_study(study: dict) -> tuple[list[Claim], Plan, Tuning | None]:
    """The claims, plan and grid of a study's definition (as a shared study keeps it in its storage)."""
    fields = study["plan"]
    tune = study.get("tune")
    return ([Claim(**c) for c in study["claims"]],
            Plan(tuple(fields["first"]), fields["round"], fields["max_seeds"], fields["margin"], fields["alpha"],
                 fields.get("error", "fdr")),
            Tuning(tune["setting"], tuple(tune["values"]), tune["by"]) if tune else None)


def _ok(result: dict | None, figure: str) -> bool:
    return bool(result) and result["status"] == "ok" and not math.isnan(float(result[figure]))


def arm_result(results: dict, arm: str, seed: int, claim: Claim, tuning: Tuning | None):
    """The arm's run on this seed, and the grid value it kept (tuned: the best by validation)."""
    if not (claim.tune and tuning):
        result = results.get((arm, seed))
        return (result, None) if _ok(result, claim.metric) else (None, None)
    runs = [(results.get((point, seed)), tuning.value_of(point)) for point in tuning.points(arm)]
    usable = [(r, v) for r, v in runs if _ok(r, tuning.by) and _ok(r, claim.metric)]
    if not usable:
        return None, None
    return max(usable, key=lambda pair: float(pair[0][tuning.by]))  # the first of equals: max keeps it


def differences(results: dict, claim: Claim, seeds: list[int], tuning: Tuning | None = None):
    """The seeds where both arms ran, the claim's figure differences on them, and (tuned) the grid
    value each arm kept on each seed."""
    used, diffs, chosen = [], [], {claim.experiment: {}, claim.against: {}}
    for seed in seeds:
        (a, rate_a), (b, rate_b) = (arm_result(results, arm, seed, claim, tuning) for arm in (claim.experiment,
                                                                                             claim.against))
        if a and b:
            used.append(seed)
            diffs.append(float(a[claim.metric]) - float(b[claim.metric]))
            chosen[claim.experiment][seed], chosen[claim.against][seed] = rate_a, rate_b
    return used, diffs, chosen if claim.tune and tuning else None


def _runs(claims: list[Claim], seeds_of, tuning: Tuning | None) -> list[tuple[str, int]]:
    return list(dict.fromkeys((e, s) for c in claims for s in seeds_of(c) for e in arms(c, tuning)))


def progress(claims: list[Claim], plan: Plan, results: dict, tuning: Tuning | None = None):
    """Replays the plan on the results so far (by (experiment, seed), failed runs included): the
    runs its next step needs and a line saying which, or, once every look and the recheck have
    their runs, no runs and one entry per claim (its verdict, interval, seeds and recheck). The
    same results always give the same answer, so any process holding them can take the next step."""
    stop_at = plan.alpha / len(claims)  # Bonferroni: a claim stopped here is decided whatever the others show
    stopped: dict[int, dict] = {}
    said = ""
    for look in range(1, max(plan.looks(c) for c in claims) + 1):
        pending = [i for i in range(len(claims)) if i not in stopped and look <= plan.looks(claims[i])]
        if not pending:
            break
        needed = _runs([claims[i] for i in pending], lambda c, look=look: plan.seeds(look, c), tuning)
        missing = [pair for pair in needed if pair not in results]
        if missing:
            return missing, None, (said + f"look {look}: {len(pending)} claims undecided, "
                                   f"{len({e for e, _ in needed})} experiments, up to {len({s for _, s in needed})} seeds")
        for i in pending:
            claim = claims[i]
            used, diffs, chosen = differences(results, claim, plan.seeds(look, claim), tuning)
            entry = sequential.test(diffs, claim.expect, plan.margin_of(claim), plan.sizes(claim))
            if sequential.smallest(entry) <= stop_at or look == plan.looks(claim):
                stopped[i] = entry | {"look": look, "seeds": used, "differences": dict(zip(used, diffs)),
                                      "chosen": chosen}
        decided = [f"{claims[i].experiment} {claims[i].metric}" for i in pending
                   if i in stopped and sequential.smallest(stopped[i]) <= stop_at]
        said = f"  look {look} decided {'; '.join(decided) if decided else 'nothing'}\n"
    smallest = [sequential.smallest(stopped[i]) for i in range(len(claims))]
    threshold = sequential.discoveries(smallest, plan.alpha) if plan.error == "fdr" else \
        stop_at if min(smallest) <= stop_at else 0.0
    # (no threshold: nothing is decided; the intervals are shown at the stopping level)
    entries = [sequential.verdict(stopped[i], threshold or stop_at, c.expect, plan.margin_of(c), plan.sizes(c))
               | {"threshold": threshold, "claim": c, "margin": plan.margin_of(c)} for i, c in enumerate(claims)]
    firm = [c for c, e in zip(claims, entries) if e["verdict"] != UNDECIDED]
    again = plan.recheck_seeds(claims)
    missing = [pair for pair in _runs(firm, lambda c: again, tuning) if pair not in results]
    if missing:
        return missing, None, said + f"recheck: {len(firm)} decided claims on the disjoint seeds {again[0]}-{again[-1]}"
    for claim, entry in zip(claims, entries):
        if entry["verdict"] != UNDECIDED:
            used, diffs, chosen = differences(results, claim, again, tuning)
            test = sequential.test(diffs, claim.expect, plan.margin_of(claim), (max(len(used), 2),))
            check = sequential.verdict(test, RECHECK_ALPHA, claim.expect, plan.margin_of(claim), (max(len(used), 2),))
            entry["recheck"] = check | {"seeds": used, "differences": dict(zip(used, diffs)), "chosen": chosen,
                                        "held": recheck(entry, check)}
        entry["improvement"] = sequential.improvement(list(entry["differences"].values()), FIGURES[claim.metric][1])
    return [], entries, ""


def decide(claims: list[Claim], plan: Plan, run, echo=print, stopped=lambda: False,
           tuning: Tuning | None = None) -> tuple[list[dict], dict]:
    """Runs the plan on one machine: ``run(pairs)`` trains the (experiment, seed) pairs not yet done
    and returns every result so far by pair. Returns one entry per claim and the results; no
    entries where ``stopped()`` turned true after a step (a signal)."""
    results: dict = {}
    while True:
        missing, entries, line = progress(claims, plan, results, tuning)
        if line:
            echo(line)
        if entries is not None:
            return entries, results
        results = run(missing)
        if stopped():
            return [], results
        if any(pair not in results for pair in missing):  # a runner that could not run them: no endless loop
            raise RuntimeError(f"the runs {[p for p in missing if p not in results][:3]} did not run")


def recheck(entry: dict, again: dict) -> str:
    """Whether a decided claim held on the disjoint seeds, by their own test at 95%: *held* where
    they reach the same verdict (an effect of the same sign), *contradicted* where they reach the
    other, *not confirmed* where they decide nothing."""
    if again["verdict"] == UNDECIDED:
        return NOT_CONFIRMED
    if again["verdict"] != entry["verdict"]:
        return CONTRADICTED
    same_sign = math.copysign(1, again["estimate"]) == math.copysign(1, entry["estimate"])
    return HELD if entry["verdict"] == NO_EFFECT or same_sign else CONTRADICTED


def answer(entry: dict, margin: float) -> str:
    """The claim's answer in the lecture's words: yes, no, or undecided."""
    claim, v, estimate = entry["claim"], entry["verdict"], entry["estimate"]
    direction = "higher" if estimate > 0 else "lower"
    size = f"{direction} by {abs(estimate):.3f}"
    if v == UNDECIDED:
        needed = entry.get("seeds_needed")
        seen = "" if math.isnan(entry["detectable"]) else f"; these seeds see {entry['detectable']:.3f} or more"
        return (f"undecided: about {needed} seeds would decide it{seen}" if needed else f"undecided{seen}")
    small = ", less than the margin" if entry.get("within_margin") else ""
    if claim.expect == "same":
        return f"yes: no difference beyond ±{margin:g}" if v == NO_EFFECT else f"no: {size}{small}"
    if v == EFFECT:
        return f"yes: {size}{small}"
    other = f" (the estimate: {size})" if direction != claim.expect and abs(estimate) > 0 else ""
    return f"no: not {claim.expect} by {margin:g} or more{other}"
