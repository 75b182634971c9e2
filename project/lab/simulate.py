"""The lab's design checked by simulation on its own per-seed differences: how often a verdict is
false, and how many claims it decides against the previous design.

    python -m project.lab.simulate                   # on docs/lab/conclusions.json (make docs PAGE=lab-power)

Each simulated claim draws its per-seed differences as its true difference plus its spread times a
real standardized difference of the page (a random sign: a difference of identical arms and its
negative are equally likely), so the noise has the shape the lab's runs have, tails included.

- *False verdicts*: every claim's true difference on the boundary of one of its hypotheses (0, or
  the margin in the claim's direction): each decision there is at most alpha likely to be false,
  and the page's false discovery rate at most alpha.
- *Power*: every claim's true difference at the page's estimate and spread: the claims decided and
  the seeds spent by this design (project.lab.sequential, bounding the false discovery rate or the
  family-wise error) and by the previous one: two-sided paired-t intervals at 1 - alpha / (claims x
  looks) (Bonferroni over both), effect where the interval excludes 0, no effect where it lies
  inside the margin, stopping at the first decision; and the previous one on the spread of the
  figures measured the former way (the gap on the validation split, the test split's accuracy).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from project.lab import sequential
from project.lab.sequential import DIRECTIONS, EFFECT, NO_EFFECT, UNDECIDED

ROOT = Path(__file__).resolve().parents[2]


def claims_of(document: dict) -> list[dict]:
    """Each claim of a conclusions.json as a simulation needs it: expect, margin, looks, estimate and
    spread of its per-seed differences (and the spread measured the former way, where the page has it)."""
    former = {n["claim"]: n["sd_former"] for n in document.get("noise", [])}
    out = []
    for c in document["claims"]:
        diffs = list(c["differences"].values())
        n = len(diffs)
        mean = sum(diffs) / n
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
        looks = tuple(c.get("looks") or _looks(document, c))
        out.append({"claim": c["claim"], "expect": c["expect"], "margin": c["margin"], "looks": looks,
                    "estimate": mean, "sd": sd, "sd_former": former.get(c["claim"], sd), "differences": diffs})
    return out


def _looks(document: dict, claim: dict) -> list[int]:
    first, step, most = len(document["first_seeds"]), document["round"], document["max_seeds"]
    return list(range(first, most, step)) + [most] if (most - first) % step else list(range(first, most + 1, step))


def shapes(claims: list[dict]) -> list[float]:
    """The page's per-seed differences, each claim's standardized (minus its mean, over its sd)."""
    pool = []
    for c in claims:
        if len(c["differences"]) >= 3 and c["sd"] > 0:
            pool += [(d - c["estimate"]) / c["sd"] for d in c["differences"]]
    return pool


def _draws(rng: random.Random, pool: list[float], mean: float, sd: float, n: int) -> list[float]:
    return [mean + sd * rng.choice(pool) * rng.choice((-1, 1)) for _ in range(n)]


def new_design(diffs: list[float], claim: dict, stop_at: float) -> dict:
    """This design's sequential test of one claim: looks until its p-value reaches ``stop_at``."""
    for n in claim["looks"]:
        entry = sequential.test(diffs[:n], claim["expect"], claim["margin"], claim["looks"])
        if sequential.smallest(entry) <= stop_at:
            break
    return entry


def decide_page(drawn: list[list[float]], claims: list[dict], alpha: float, error: str = "fdr") -> list[dict]:
    """Every claim of a page by this design: stopped at alpha / claims, then decided by
    Benjamini-Hochberg (``fdr``) or at that Bonferroni level (``fwer``)."""
    stop_at = alpha / len(claims)
    entries = [new_design(d, c, stop_at) for d, c in zip(drawn, claims)]
    smallest = [sequential.smallest(e) for e in entries]
    threshold = sequential.discoveries(smallest, alpha) if error == "fdr" else stop_at
    return [{"verdict": EFFECT if e["P"][EFFECT] <= threshold else NO_EFFECT if e["P"][NO_EFFECT] <= threshold
             else UNDECIDED, "both": max(e["P"].values()) <= threshold, "n": e["n"]} for e in entries]


def previous_design(diffs: list[float], claim: dict, claims: int, alpha: float) -> dict:
    """The previous page's test: two-sided intervals at 1 - alpha / (claims x looks), first decision."""
    looks = claim["looks"]
    level = alpha / (claims * len(looks))
    for n in looks:
        d = diffs[:n]
        mean = sum(d) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        half = sequential._t(1 - level / 2, n - 1) * sd / math.sqrt(n)
        if mean - half > 0 or mean + half < 0:
            return {"verdict": EFFECT, "n": n, "sign": 1 if mean > 0 else -1}
        if -claim["margin"] <= mean - half and mean + half <= claim["margin"]:
            return {"verdict": NO_EFFECT, "n": n}
    return {"verdict": UNDECIDED, "n": looks[-1]}


def false(verdict: dict, claim: dict, truth: float) -> bool:
    """Whether a verdict is false for a true difference ``truth`` (an effect of a direction is false
    where the truth is not that way; no effect where the truth reaches the margin that way)."""
    if verdict["verdict"] == UNDECIDED:
        return False
    if claim["expect"] in DIRECTIONS:
        theta = DIRECTIONS[claim["expect"]] * truth
        wrong_effect = theta <= 0
        wrong_none = theta >= claim["margin"]
    else:
        wrong_effect, wrong_none = truth == 0, abs(truth) >= claim["margin"]
    if verdict.get("both"):
        return wrong_effect or wrong_none
    return wrong_effect if verdict["verdict"] == EFFECT else wrong_none


def boundaries(claims: list[dict], rng: random.Random) -> list[float]:
    """A true difference on a boundary of each claim: 0, or the margin in the claim's direction."""
    return [0.0 if rng.random() < 0.5 else DIRECTIONS.get(c["expect"], rng.choice((-1, 1))) * c["margin"]
            for c in claims]


DESIGNS = ("previous", "fwer", "fdr")  # the previous page's; this one bounding the FWER; this one, the FDR (default)


def _page(design: str, drawn: list[list[float]], claims: list[dict], alpha: float) -> list[dict]:
    if design == "previous":
        return [previous_design(d, c, len(claims), alpha) for d, c in zip(drawn, claims)]
    return decide_page(drawn, claims, alpha, design)


def simulate(claims: list[dict], pages: int, seed: int = 0, alpha: float = 0.05) -> dict:
    """For each design, on the same simulated pages: with every claim on a boundary, the false
    discovery rate and the chance of any false verdict; with every claim at the page's estimate, the
    claims decided and the seeds spent (and the previous design on the figures measured the former way)."""
    rng = random.Random(seed)
    pool = shapes(claims)
    most = max(c["looks"][-1] for c in claims)
    out = {d: {"false_discovery_rate": 0.0, "any_false": 0.0, "decided": 0.0, "seeds": 0.0} for d in DESIGNS}
    former = {"decided": 0.0, "seeds": 0.0}
    for _ in range(pages):
        truths = boundaries(claims, rng)
        drawn = [_draws(rng, pool, t, c["sd"], most) for t, c in zip(truths, claims)]
        for design in DESIGNS:
            verdicts = _page(design, drawn, claims, alpha)
            wrong = sum(false(v, c, t) for v, c, t in zip(verdicts, claims, truths))
            made = sum(v["verdict"] != UNDECIDED for v in verdicts)
            out[design]["false_discovery_rate"] += (wrong / made if made else 0.0) / pages
            out[design]["any_false"] += (wrong > 0) / pages
        drawn = [_draws(rng, pool, c["estimate"], c["sd"], most) for c in claims]
        for design in DESIGNS:
            ends = _page(design, drawn, claims, alpha)
            out[design]["decided"] += sum(v["verdict"] != UNDECIDED for v in ends) / pages
            out[design]["seeds"] += sum(v["n"] for v in ends) / pages
        ends = _page("previous", [_draws(rng, pool, c["estimate"], c["sd_former"], most) for c in claims], claims, alpha)
        former["decided"] += sum(v["verdict"] != UNDECIDED for v in ends) / pages
        former["seeds"] += sum(v["n"] for v in ends) / pages
    return {"pages": pages, "claims": len(claims), "alpha": alpha, "seed": seed, "designs": out,
            "previous_on_former_figures": former}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m project.lab.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conclusions", default=str(ROOT / "docs" / "lab" / "conclusions.json"))
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    claims = claims_of(json.loads(Path(args.conclusions).read_text()))
    path = Path(args.conclusions).resolve()
    result = simulate(claims, args.pages, args.seed) | {
        "conclusions": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
