"""What the lab concludes: conclusions.md (one answer per lecture claim: its verdict, size, interval,
probability of improvement and recheck; the baseline it used; the learning rates the tuned arms got;
the noise of the figures) and conclusions.json (the same, one entry per claim, for a machine)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from project.lab.claims import FIGURES, Tuning
from project.lab.decide import Plan, answer, arms, differences
from project.lab.sequential import EFFECT, NO_EFFECT, UNDECIDED

COMMAND = "make compare DECIDE=1"
# The figures measured on more images, and the one each replaces (the noise table compares them).
FORMER = {"unused_gap": "gap", "unseen_acc": "test_acc"}


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


def _number(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def runs_used(entries: list[dict], plan: Plan, tuning=None) -> dict:
    """Runs the sequential plan needed (each experiment on the seeds its undecided claims reached,
    and the recheck), and a fixed plan with the same power: every experiment on all the seeds its
    claims may use (the sequential plan's largest sample; its intervals are no wider, so its power is
    no lower), and the same recheck."""
    claims = [e["claim"] for e in entries]
    reach: dict[str, int] = {}
    fixed: dict[str, int] = {}
    for entry in entries:
        for name in arms(entry["claim"], tuning):
            reach[name] = max(reach.get(name, 0), len(plan.seeds(entry["look"], entry["claim"])))
            fixed[name] = max(fixed.get(name, 0), plan.cap(entry["claim"]))
    recheck = {n for e in entries if "recheck" in e for n in arms(e["claim"], tuning)}
    again = len(recheck) * len(plan.recheck_seeds(claims))
    return {"sequential": sum(reach.values()) + again, "fixed": sum(fixed.values()) + again, "recheck": again}


def noise(entries: list[dict], results: dict, tuning=None) -> list[dict]:
    """For each claim on a figure measured on more images: the spread (sd) of its per-seed
    differences on the same runs and seeds, measured the former way and the new."""
    rows = []
    for entry in entries:
        claim = entry["claim"]
        if claim.metric in FORMER and len(entry["seeds"]) >= 2:
            former = dataclasses.replace(claim, metric=FORMER[claim.metric])
            _, diffs, _ = differences(results, former, entry["seeds"], tuning)
            now = list(entry["differences"].values())
            if len(diffs) == len(now):  # (a run without the former figure: nothing to compare on those seeds)
                rows.append({"claim": claim.claim, "figure": claim.metric, "former": former.metric, "seeds": len(now),
                             "sd_former": _sd(diffs), "sd": _sd(now)})
    return rows


def pooled(spread: list[dict]) -> dict[str, tuple[float, int]]:
    """Each figure's variance of the differences now over the former's, the geometric mean over its
    claims (each claim counts once, whatever its scale), and the number of claims."""
    out = {}
    for figure in dict.fromkeys(r["figure"] for r in spread):
        rows = [r for r in spread if r["figure"] == figure and r["sd_former"] > 0 and r["sd"] > 0]
        if rows:
            out[figure] = (math.exp(sum(2 * math.log(r["sd"] / r["sd_former"]) for r in rows) / len(rows)), len(rows))
    return out


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _rates(entries: list[dict]) -> list[str]:
    """The learning rate each tuned arm got, seed by seed, as a Markdown table."""
    tuned = [e for e in entries if e.get("chosen")]
    if not tuned:
        return []
    lines = ["| claim | arm | rate kept on each seed (seed: rate) |", "|---|---|---|"]
    for e in tuned:
        for arm, by_seed in e["chosen"].items():
            lines.append(f"| {e['claim'].claim} | {arm} | {', '.join(f'{s}: {v:g}' for s, v in by_seed.items())} |")
    return lines


def write_conclusions(entries: list[dict], plan: Plan, out_dir: Path, minutes: float | None = None,
                      command: str = COMMAND, baseline: dict | None = None, tuning: Tuning | None = None,
                      flags: list[str] = (), spread: list[dict] = ()) -> None:
    """conclusions.md and conclusions.json; ``command`` is what regenerates them, ``baseline`` what
    the study says of its baseline (project.lab.configs.describe), ``flags`` the study's own flags
    for every run, ``spread`` the noise table (noise())."""
    tune = {"setting": tuning.setting, "values": list(tuning.values), "by": tuning.by} if tuning else None
    used = runs_used(entries, plan, tuning)
    rechecked = [e for e in entries if "recheck" in e]
    claims = [e["claim"] for e in entries]
    again, first = _seeds(plan.recheck_seeds(claims)), _seeds(list(plan.first))
    threshold = entries[0]["threshold"] if entries else 0.0
    baseline = baseline or {"source": "configs/experiment/baseline.yaml", "settings": {}, "carried": {}}
    lines = [
        f"The lecture's claims, answered by `{command}`: {used['sequential']} runs"
        + (f", {minutes:.1f} minutes on this 2-core CPU." if minutes is not None else "."), "",
        f"Baseline: `{baseline['source']}`" + (f": {_settings(baseline['settings'])}" if baseline["settings"] else "")
        + "." + (f" Kept from configs/default.yaml, which it does not set: {_settings(baseline['carried'])}."
                 if baseline["carried"] else "") + (f" Every run also gets: `{' '.join(flags)}`." if flags else ""), "",
        "Each claim is one comparison: the technique minus the baseline (or the reference named) on the same seeds, "
        "on one figure of the tested weights: " + "; ".join(f"{m} = {FIGURES[m][0]}" for m in
                                                             dict.fromkeys(c.metric for c in claims)) + ".", "",
        "Verdicts: **effect** (as the claim predicts it; for a claim of no difference, any difference), **no effect** "
        "(none of the predicted kind as large as the margin; for a claim of no difference, none beyond ±margin), "
        "**undecided** (neither yet; with about how many seeds would decide it).", "",
        f"How: a claim is two hypotheses that cannot both hold (no gain / a gain of the margin), each a one-sided paired "
        f"t-test, so a verdict is false only where its one true hypothesis was rejected. Seeds {first} for every "
        f"claim, then {plan.round} more a look for those undecided, at most {plan.max_seeds} (a claim's own max_seeds "
        "replaces it); each look's p-value is made valid whatever look the claim stops at (a sequential p-value: "
        "the chance under the hypothesis that any planned look gives one as small, looks weighted (seeds/last)^2). "
        f"A claim stops at {plan.alpha:g}/{len(claims)}; " + (
            f"at the end Benjamini-Hochberg over the {len(claims)} claims decides those at or under {threshold:.4f} "
            f"(= {plan.alpha:g} x decided / claims): the expected share of false verdicts on this page (false discovery "
            f"rate) is at most {plan.alpha:.0%} (`--error fwer` bounds the chance of any false verdict instead, and "
            "decides fewer)." if plan.error == "fdr" else
            f"that is also where it is decided (Bonferroni over the {len(claims)} claims): the chance of any false "
            f"verdict on this page (family-wise error) is at most {plan.alpha:.0%}.") + " Intervals are at that level.", "",
        f"Recheck: each decided claim again on the disjoint seeds {again}, its own one-sided tests at 95%: *held* (the "
        "same verdict), *not confirmed* (undecided on those few seeds) or *contradicted* (the other verdict). "
        "P(better): the share of seeds on which the technique moved the figure the better way, with its 95% interval.",
        "",
        f"| lecture claim | technique | figure | answer | verdict | difference [interval] | P(better) | seeds | "
        f"recheck on {again} |", "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        claim = e["claim"]
        technique = claim.experiment + ("" if claim.against == "baseline" else f" vs {claim.against}") + \
            (" (rates tuned)" if claim.tune else "")
        again_cell = (f"{e['recheck']['held']}: {_interval(e['recheck'])}" if "recheck" in e else "-")
        margin = plan.margin_of(claim)
        pi = e["improvement"]
        better = "n/a" if math.isnan(pi["estimate"]) else \
            f"{pi['estimate']:.2f} [{pi['interval'][0]:.2f}, {pi['interval'][1]:.2f}]"
        lines.append(f"| {claim.claim} | {technique} | {claim.metric} | {answer(e, margin)} | {e['verdict']} | "
                     f"{_interval(e)} | {better} | {len(e['seeds'])} | {again_cell} |")
    counts = {v: sum(e["verdict"] == v for e in entries) for v in (EFFECT, NO_EFFECT, UNDECIDED)}
    held = sum(e["recheck"]["held"] == "held" for e in rechecked)
    own = [f"{c.claim}: ±{c.margin:g}" for c in claims if c.margin is not None]
    lines += ["", f"{_n(counts[EFFECT], 'effect')}, {counts[NO_EFFECT]} no effect, {counts[UNDECIDED]} undecided; "
              f"{held} of {len(rechecked)} decided claims held on seeds {again}. Margin ±{plan.margin:g}"
              + (f"; a claim's own: {'; '.join(own)}" if own else "") + ".",
              f"Runs: the sequential plan used {used['sequential']} ({used['recheck']} of them the recheck); a fixed "
              f"plan with the same power (every experiment on all the seeds its claims may use, and the same recheck) "
              f"needs {used['fixed']}."]
    if tune:
        lines += ["", f"Learning rates: each arm of a claim marked (rates tuned) ran at every value of "
                  f"{tune['setting']} in {tune['values']} on each seed and kept the run with the best {tune['by']} "
                  "(validation; the test split and the unused images stay unseen): the same grid and budget for "
                  "every arm.", "", *_rates(entries)]
    if spread:
        lines += ["", "Noise: the spread (sd) of each claim's per-seed differences on the same runs and seeds, the "
                  "figure measured the former way and on more images (unused_gap's dev side: the unused training "
                  "images instead of the validation split; unseen_acc: the test split and the unused images instead of "
                  "the test split alone):", "",
                  "| claim | figure (former) | sd former | sd now | seeds |", "|---|---|---|---|---|",
                  *[f"| {r['claim']} | {r['figure']} ({r['former']}) | {r['sd_former']:.4f} | {r['sd']:.4f} | "
                    f"{r['seeds']} |" for r in spread],
                  "", "Variance now / former, the geometric mean over a figure's claims: " + "; ".join(
                      f"{figure}: {ratio:.2f} over {_n(count, 'claim')}" for figure, (ratio, count) in pooled(spread).items())
                  + " (below 1: less noise; a seed's variance is what the plan's number of seeds scales with)."]
    (out_dir / "conclusions.md").write_text("\n".join(lines) + "\n")
    document = {"command": command, "alpha": plan.alpha, "error": plan.error,
                "threshold": threshold, "margin": plan.margin, "first_seeds": list(plan.first), "round": plan.round,
                "max_seeds": plan.max_seeds, "minutes": minutes, "runs": used, "baseline": baseline, "tune": tune,
                "flags": list(flags),
                "noise": [{k: _number(v) for k, v in r.items()} for r in spread],
                "noise_pooled": {figure: {"variance_ratio": ratio, "claims": count} for figure, (ratio, count) in
                                 pooled(spread).items()},
                "claims": [_json(e, plan, command) for e in entries]}
    (out_dir / "conclusions.json").write_text(json.dumps(document, indent=1) + "\n")


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _json(entry: dict, plan: Plan, command: str) -> dict:
    claim = entry["claim"]

    def figures(e: dict) -> dict:
        return {"estimate": _number(e["estimate"]), "interval": [_number(e["low"]), _number(e["high"])],
                "level": _number(e.get("level", math.nan)), "sd": _number(e["sd"]), "seeds": e["seeds"],
                "detectable": _number(e["detectable"]), "p": e["p"], "P": e["P"],
                "differences": {str(s): round(d, 6) for s, d in e["differences"].items()},
                **({"rates": {arm: {str(s): v for s, v in by.items()} for arm, by in e["chosen"].items()}}
                   if e.get("chosen") else {})}

    out = {"claim": claim.claim, "technique": claim.experiment, "against": claim.against, "metric": claim.metric,
           "expect": claim.expect, "tuned": claim.tune, "verdict": entry["verdict"],
           "within_margin": entry["within_margin"], "answer": answer(entry, plan.margin_of(claim)),
           "margin": plan.margin_of(claim), "look": entry["look"], "looks": list(plan.sizes(claim)),
           "seeds_needed": entry.get("seeds_needed"), "improvement": entry["improvement"], **figures(entry),
           "command": command}
    if "recheck" in entry:
        out["recheck"] = {"held": entry["recheck"]["held"], "verdict": entry["recheck"]["verdict"],
                          **figures(entry["recheck"])}
    return out
