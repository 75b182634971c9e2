"""What the lab concludes: conclusions.md (one answer per lecture claim, its verdict, size, interval
and recheck) and conclusions.json (the same, one entry per claim, for a machine)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from project.lab.decide import FIGURES, Plan, answer, experiments_of

COMMAND = "make compare DECIDE=1"


def _seeds(seeds: list[int]) -> str:
    if not seeds:
        return "none"
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2 else \
        ",".join(map(str, seeds))


def _interval(entry: dict) -> str:
    if math.isnan(entry["low"]):
        return "n/a"
    return f"{entry['estimate']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _number(value: float):
    return None if isinstance(value, float) and math.isnan(value) else value


def runs_used(entries: list[dict], plan: Plan) -> dict:
    """Runs the sequential plan needed (each experiment on the seeds its undecided claims reached,
    and the recheck), and a fixed plan with the same power: every experiment on all of
    ``plan.max_seeds`` seeds (the sequential plan's largest sample; its intervals are no wider, so
    its power is no lower), and the same recheck."""
    claims = [e["claim"] for e in entries]
    reach: dict[str, int] = {}
    for entry in entries:
        for name in (entry["claim"].experiment, entry["claim"].against):
            reach[name] = max(reach.get(name, 0), len(Plan.seeds(plan, entry["look"])))
    recheck = {n for e in entries if "recheck" in e for n in (e["claim"].experiment, e["claim"].against)}
    again = len(recheck) * len(plan.recheck_seeds())
    return {"sequential": sum(reach.values()) + again, "fixed": len(experiments_of(claims)) * plan.max_seeds + again,
            "recheck": again}


def write_conclusions(entries: list[dict], plan: Plan, out_dir: Path, minutes: float | None = None,
                      command: str = COMMAND) -> None:
    """conclusions.md and conclusions.json; ``command`` is what regenerates them."""
    claims = len(entries)
    used = runs_used(entries, plan)
    rechecked = [e for e in entries if "recheck" in e]
    again = _seeds(plan.recheck_seeds())
    first = _seeds(list(plan.first))
    lines = [
        f"The lecture's claims, answered by `{command}`: {used['sequential']} runs"
        + (f", {minutes:.1f} minutes on this 2-core CPU." if minutes is not None else "."), "",
        "Each claim is one comparison: the technique minus the baseline (or the reference named) on the same seeds, "
        "on one figure of the tested weights; bias = 1 - clean train accuracy, variance = gap = clean train - "
        "validation accuracy. Verdicts: **effect** (the interval excludes 0), **no effect** (the whole interval "
        f"lies inside ±{plan.margin:g}, the margin), **undecided** (neither; with the smallest difference those "
        "seeds would see with 80% power).", "",
        f"Seeds until decided: seeds {first} for every claim, then {plan.round} more a look for the claims still "
        f"undecided, at most {plan.max_seeds} ({_n(plan.looks, 'look')}). Each interval is a paired-t interval at "
        f"1 - {plan.alpha:g}/({claims} x {plan.looks}): Bonferroni over the page's {_n(claims, 'claim')} and the "
        f"plan's {_n(plan.looks, 'look')}, so every interval on the page holds together with {1 - plan.alpha:.0%} confidence "
        "however early each comparison stopped: at most a 5% chance of any false effect or false no effect here.",
        "",
        f"Recheck: each decided claim again on the disjoint seeds {again}, its own 95% interval (a confirmation of "
        "one stated result): *held* (the same verdict), *not confirmed* (undecided on those few seeds) or "
        "*contradicted* (the opposite).", "",
        f"| lecture claim | technique | figure | answer | verdict | difference [interval] | seeds | recheck on {again} |",
        "|---|---|---|---|---|---|---|---|"]
    for e in entries:
        claim = e["claim"]
        technique = claim.experiment + ("" if claim.against == "baseline" else f" vs {claim.against}")
        again_cell = (f"{e['recheck']['held']}: {_interval(e['recheck'])}" if "recheck" in e else "-")
        lines.append(f"| {claim.claim} | {technique} | {FIGURES[claim.metric]} | {answer(e, plan.margin)} | "
                     f"{e['verdict']} | {_interval(e)} | {len(e['seeds'])} | {again_cell} |")
    counts = {v: sum(e["verdict"] == v for e in entries) for v in ("effect", "no effect", "undecided")}
    held = sum(e["recheck"]["held"] == "held" for e in rechecked)
    lines += ["", f"{_n(counts['effect'], 'effect')}, {counts['no effect']} no effect, {counts['undecided']} undecided; "
              f"{held} of {len(rechecked)} decided claims held on seeds {again}.",
              f"Runs: the sequential plan used {used['sequential']} ({used['recheck']} of them the recheck); a fixed "
              f"plan with the same power (every experiment on all {plan.max_seeds} seeds, and the same recheck) needs "
              f"{used['fixed']}."]
    (out_dir / "conclusions.md").write_text("\n".join(lines) + "\n")
    document = {"command": command, "alpha": plan.alpha, "margin": plan.margin, "first_seeds": list(plan.first),
                "round": plan.round, "max_seeds": plan.max_seeds, "looks": plan.looks, "minutes": minutes,
                "runs": used, "claims": [_json(e, plan, command) for e in entries]}
    (out_dir / "conclusions.json").write_text(json.dumps(document, indent=1) + "\n")


def _json(entry: dict, plan: Plan, command: str) -> dict:
    claim = entry["claim"]

    def figures(e: dict) -> dict:
        return {"estimate": _number(e["estimate"]), "interval": [_number(e["low"]), _number(e["high"])],
                "level": 1 - e["level"], "seeds": e["seeds"], "detectable": _number(e["detectable"]),
                "differences": {str(s): round(d, 6) for s, d in e["differences"].items()}}

    out = {"claim": claim.claim, "technique": claim.experiment, "against": claim.against, "metric": claim.metric,
           "expect": claim.expect, "verdict": entry["verdict"], "answer": answer(entry, plan.margin),
           "margin": plan.margin, "look": entry["look"], **figures(entry), "command": command}
    if "recheck" in entry:
        out["recheck"] = {"held": entry["recheck"]["held"], "verdict": entry["recheck"]["verdict"],
                          **figures(entry["recheck"])}
    return out
