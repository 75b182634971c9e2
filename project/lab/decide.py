"""The lab that decides: every claim of ``configs/lab/lecture.yaml`` answered with an effect and its
size, no effect beyond a margin, or undecided, seeds added in rounds until it is decided.

    python -m project.lab --until-decided                # make compare DECIDE=1
    python -m project.lab --until-decided --max-seeds 20 --margin 0.02 --claims my_claims.yaml

A claim is one comparison: an experiment minus the baseline (or the claim's ``against``) on the
same seeds, on one figure of the tested weights. The plan runs the first seeds (0-4) for every
claim, then adds a round of seeds (5 more) to the claims still undecided, up to ``--max-seeds``;
a decided claim costs no more runs. Optional stopping is made valid by Bonferroni over the plan's
looks and the page's claims: every interval is a paired-t interval at 1 - alpha / (claims x looks),
so all intervals of all looks hold together with 1 - alpha however the looks stop (a confidence
sequence over a fixed number of looks, simple to state and to check by simulation; alpha spending
with tighter boundaries needs a known variance, which 5 seeds do not give). Each decided claim is
then rechecked on seeds disjoint from every seed the plan could use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from project.errors import fail
from project.lab.stats import EFFECT, NO_EFFECT, UNDECIDED, sequential, verdict
from project.run.checks import MAX_SEED
from project.run.cli import CONFIG_DIR

CLAIMS_FILE = CONFIG_DIR / "lab" / "lecture.yaml"
EXPECT = ("lower", "higher", "same")
# the figures a claim can be about (results.csv's, of the tested weights)
FIGURES = {"test_acc": "test accuracy", "gap": "variance (gap)", "variance": "variance (gap)", "bias": "bias",
           "train_acc": "clean train accuracy", "best_val_acc": "best val accuracy",
           "zero_fraction": "fraction of weights exactly 0", "weight_norm": "weight L2 norm"}
ALPHA = 0.05
MARGIN = 0.01  # one point of accuracy: 10 of the 1,000 test images, about one baseline seed-to-seed sd
HELD, NOT_CONFIRMED, CONTRADICTED = "held", "not confirmed", "contradicted"


@dataclass(frozen=True)
class Claim:
    """One lecture claim: ``experiment`` minus ``against`` on ``metric``; ``expect`` is what the
    lecture predicts (lower, higher, or same: no effect beyond the margin)."""
    claim: str
    experiment: str
    metric: str
    expect: str
    against: str = "baseline"


def load_claims(path: str | Path, known: list[str]) -> list[Claim]:
    """The claims of a YAML file (``claims:``, a list of claim/experiment/metric/expect[/against]),
    each checked: one line naming the entry, the value and what is allowed, before any run."""
    import yaml

    path = Path(path)
    if not path.is_file():
        fail("--claims", path, "a YAML file of claims such as configs/lab/lecture.yaml", "is not a file")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        fail("--claims", path, "valid YAML", f"does not parse: {str(err).splitlines()[0]}")
    entries = content.get("claims") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries:
        fail("--claims", path, "a file with a non-empty list under `claims:`")
    claims = []
    for i, entry in enumerate(entries):
        where = f"claims[{i}]"
        if not isinstance(entry, dict):
            fail(where, entry, "a mapping with claim, experiment, metric and expect")
        missing = [k for k in ("claim", "experiment", "metric", "expect") if k not in entry]
        extra = sorted(set(entry) - {"claim", "experiment", "metric", "expect", "against"})
        if missing or extra:
            fail(where, entry, "the keys claim, experiment, metric, expect and (optional) against",
                 f"lacks {', '.join(missing)}" if missing else f"has {', '.join(extra)}")
        claim = Claim(**{k: str(v) for k, v in entry.items()})
        for key in ("experiment", "against"):
            name = getattr(claim, key)
            if "=" not in name and name not in known:
                fail(f"{where}.{key}", name, f"an experiment of configs/experiment/ ({', '.join(known)}) or "
                     "setting=value")
        if claim.experiment == claim.against:
            fail(f"{where}.against", claim.against, "an experiment other than the claim's own")
        if claim.metric not in FIGURES:
            fail(f"{where}.metric", claim.metric, ", ".join(FIGURES))
        if claim.expect not in EXPECT:
            fail(f"{where}.expect", claim.expect, ", ".join(EXPECT))
        if any((c.experiment, c.against, c.metric) == (claim.experiment, claim.against, claim.metric) for c in claims):
            fail(where, claim.claim, "each comparison once", f"repeats {claim.experiment} vs {claim.against} on "
                 f"{claim.metric}")
        claims.append(claim)
    return claims


def experiments_of(claims: list[Claim]) -> list[str]:
    """Every experiment the claims need, the baseline first."""
    names = dict.fromkeys(["baseline"] if any("baseline" in (c.experiment, c.against) for c in claims) else [])
    for claim in claims:
        names |= dict.fromkeys([claim.experiment, claim.against])
    return list(names)


@dataclass(frozen=True)
class Plan:
    """Seeds until decided: ``first`` seeds for every claim, then ``round`` more a look for those
    still undecided, at most ``max_seeds`` each; ``margin`` the equivalence margin."""
    first: tuple[int, ...]
    round: int
    max_seeds: int
    margin: float = MARGIN
    alpha: float = ALPHA

    def check(self) -> None:
        if len(self.first) < 2:
            fail("--seeds", ",".join(map(str, self.first)), "at least 2 seeds for the first round (3 or more advised)")
        if not (isinstance(self.round, int) and self.round >= 1):
            fail("--round", self.round, "an integer >= 1 (seeds added a look)")
        if not (isinstance(self.max_seeds, int) and self.max_seeds >= max(2, len(self.first))):
            fail("--max-seeds", self.max_seeds, f"an integer >= the first round's {len(self.first)} seeds and >= 2")
        if not (isinstance(self.margin, float) and 0 < self.margin < 1):
            fail("--margin", self.margin, "a number in (0, 1), e.g. 0.01 (one point of accuracy)")
        last = self.recheck_seeds()[-1]
        if last > MAX_SEED:
            fail("--max-seeds", self.max_seeds, f"a plan whose seeds and recheck seeds stay <= {MAX_SEED}",
                 f"reaches seed {last}")

    @property
    def looks(self) -> int:
        return 1 + math.ceil((self.max_seeds - len(self.first)) / self.round)

    def _pool(self, count: int) -> list[int]:
        pool, seed = list(self.first), max(self.first) + 1
        while len(pool) < count:
            pool.append(seed)
            seed += 1
        return pool[:count]

    def seeds(self, look: int) -> list[int]:
        """The seeds a claim has at look ``look`` (1 = the first round)."""
        return self._pool(min(self.max_seeds, len(self.first) + (look - 1) * self.round))

    def recheck_seeds(self) -> list[int]:
        """As many seeds as the first round (at least 3), after every seed the plan can use."""
        start = max(self._pool(self.max_seeds)) + 1
        return list(range(start, start + max(3, len(self.first))))


def from_study(study: dict) -> tuple[list[Claim], Plan]:
    """The claims and plan of a study's definition (as a shared study keeps it in its storage)."""
    fields = study["plan"]
    return [Claim(**c) for c in study["claims"]], Plan(tuple(fields["first"]), fields["round"], fields["max_seeds"],
                                                       fields["margin"], fields["alpha"])


def differences(results: dict, claim: Claim, seeds: list[int]) -> tuple[list[int], list[float]]:
    """The seeds where both sides of the claim ran, and the claim's figure differences on them."""
    pairs = [(s, results.get((claim.experiment, s)), results.get((claim.against, s))) for s in seeds]
    ok = [(s, a, b) for s, a, b in pairs if a and b and a["status"] == "ok" and b["status"] == "ok"
          and not math.isnan(float(a[claim.metric])) and not math.isnan(float(b[claim.metric]))]
    return [s for s, _, _ in ok], [float(a[claim.metric]) - float(b[claim.metric]) for _, a, b in ok]


def recheck(entry: dict, again: dict, margin: float) -> str:
    """Whether a decided claim held on the disjoint seeds, their interval at 95% (a confirmation of
    one stated result; the page's error rate is the plan's): an effect held where the recheck shows
    an effect of the same sign; no effect held where the recheck shows none and its mean is inside
    the margin; contradicted where it shows the opposite."""
    if entry["verdict"] == EFFECT:
        if again["verdict"] == EFFECT:
            return HELD if math.copysign(1, again["estimate"]) == math.copysign(1, entry["estimate"]) else CONTRADICTED
        return NOT_CONFIRMED
    if again["verdict"] == EFFECT:
        return CONTRADICTED
    return HELD if abs(again["estimate"]) <= margin else NOT_CONFIRMED


def progress(claims: list[Claim], plan: Plan, results: dict) -> tuple[list[tuple[str, int]], list[dict] | None, str]:
    """Replays the plan on the results so far (by (experiment, seed), failed runs included): the
    runs its next step needs and a line saying which, or, once every look and the recheck have
    their runs, no runs and one entry per claim (its verdict, interval, seeds and recheck). The
    same results always give the same answer, so any process holding them can take the next step."""
    level = plan.alpha / len(claims)  # Bonferroni over the page's claims; sequential() splits it over the looks
    entries: dict[int, dict] = {}
    said = ""
    for look in range(1, plan.looks + 1):
        pending = [i for i in range(len(claims)) if i not in entries]
        if not pending:
            break
        seeds = plan.seeds(look)
        needed = experiments_of([claims[i] for i in pending])
        missing = [(e, s) for e in needed for s in seeds if (e, s) not in results]
        if missing:
            return missing, None, (said + f"look {look} of {plan.looks}: {len(pending)} claims undecided, "
                                   f"{len(needed)} experiments on seeds {seeds[0]}-{seeds[-1]}")
        for i in pending:
            rounds = [differences(results, claims[i], plan.seeds(k))[1] for k in range(1, look + 1)]
            entry = sequential(rounds, plan.margin, level, plan.looks)
            if entry["verdict"] != UNDECIDED or look == plan.looks:
                used, diffs = differences(results, claims[i], seeds)
                entries[i] = entry | {"look": look, "seeds": used, "level": level / plan.looks,
                                      "differences": dict(zip(used, diffs))}
        decided = [f"{claims[i].experiment} {claims[i].metric}: {entries[i]['verdict']}" for i in pending if i in entries]
        said = f"  look {look} decided {'; '.join(decided) if decided else 'nothing'}\n"
    firm = [i for i, e in entries.items() if e["verdict"] != UNDECIDED]
    seeds = plan.recheck_seeds()
    missing = [(e, s) for e in experiments_of([claims[i] for i in firm]) for s in seeds if (e, s) not in results]
    if missing:
        return missing, None, said + f"recheck: {len(firm)} decided claims on the disjoint seeds {seeds[0]}-{seeds[-1]}"
    out = []
    for i, claim in enumerate(claims):
        entry = dict(entries[i], claim=claim)
        if i in firm:
            used, diffs = differences(results, claim, seeds)
            again = dict(differences=dict(zip(used, diffs))) | verdict(diffs, plan.margin, plan.alpha)
            entry["recheck"] = again | {"seeds": used, "level": plan.alpha, "held": recheck(entry, again, plan.margin)}
        out.append(entry)
    return [], out, said.rstrip("\n")


def decide(claims: list[Claim], plan: Plan, run, echo=print, stopped=lambda: False) -> tuple[list[dict], dict]:
    """Runs the plan on one machine: ``run(pairs)`` trains the (experiment, seed) pairs not yet done
    and returns every result so far by pair. Returns one entry per claim and the results; no
    entries where ``stopped()`` turned true after a step (a signal)."""
    results: dict = {}
    while True:
        missing, entries, line = progress(claims, plan, results)
        if line:
            echo(line)
        if entries is not None:
            return entries, results
        results = run(missing)
        if stopped():
            return [], results
        if any(pair not in results for pair in missing):  # a runner that could not run them: no endless loop
            raise RuntimeError(f"the runs {[p for p in missing if p not in results][:3]} did not run")


def answer(entry: dict, margin: float) -> str:
    """The claim's answer in the lecture's words: yes, no, the opposite, or undecided."""
    claim, v = entry["claim"], entry["verdict"]
    if v == UNDECIDED:
        return "undecided" if math.isnan(entry["detectable"]) else \
            f"undecided: these seeds would see a difference of {entry['detectable']:.3f} or more"
    if v == NO_EFFECT:
        return f"yes: no difference beyond ±{margin:g}" if claim.expect == "same" else \
            f"no: no effect beyond ±{margin:g}"
    direction = "higher" if entry["estimate"] > 0 else "lower"
    size = f"{direction} by {abs(entry['estimate']):.3f}"
    if claim.expect == "same":
        return f"no: {size}"
    return f"yes: {size}" if direction == claim.expect else f"no, the opposite: {size}"
