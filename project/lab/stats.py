"""The lab's table statistics: mean, spread and 95% interval over seeds, and which experiments differ
from the baseline (paired by seed, corrected for the number of comparisons). The verdicts of a
decided study are project.lab.sequential's.

A seed gives every experiment the same split, training subset and initialization stream, so an
experiment is compared with the baseline seed by seed: the difference on each seed, their mean, and
its 95% paired-t interval. A comparison is marked only where its Holm-corrected p-value (Holm 1979,
over every comparison in the table: experiments x the marked metrics) is below 0.05, i.e. where the
interval excludes 0 even after the correction. A study run on a second, disjoint seed set tells
which marks replicate.
"""

from __future__ import annotations

import math

# result key -> table header; all are the tested weights' figures except best val, epochs and seconds
METRICS = {"train_acc": "clean train acc", "best_val_acc": "best val acc", "test_acc": "test acc",
           "unseen_acc": "unseen acc", "gap": "gap (clean train - val)", "unused_gap": "gap (clean train - unused)",
           "bias": "bias", "variance": "variance",
           "weight_norm": "weight L2 norm", "zero_fraction": "zero fraction", "epochs_to_best": "epochs to best",
           "wall_s": "wall s"}
MARKED = ("test_acc", "gap")  # compared with the baseline, seed by seed
ALPHA = 0.05


def mean_sd(values: list[float]) -> tuple[int, float, float]:
    """Count, mean and sample standard deviation (nan where there are too few values for them)."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return n, mean, sd


def mean_std_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of the 95% t-interval of the mean."""
    from scipy.stats import t

    n, mean, std = mean_sd(values)
    if n < 2:
        return mean, (0.0 if n == 1 else math.nan), math.nan
    return mean, std, float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def paired_t(differences: list[float]) -> tuple[float, float, float]:
    """Mean difference, the half-width of its 95% paired-t interval, and the two-sided p-value of
    "the mean difference is 0" (nan with fewer than two pairs)."""
    from scipy.stats import t

    mean, std, ci = mean_std_ci(differences)
    n = len(differences)
    if n < 2:
        return mean, ci, math.nan
    if std == 0:
        return mean, ci, 0.0 if mean != 0 else 1.0
    statistic = mean / (std / math.sqrt(n))
    return mean, ci, float(2 * t.sf(abs(statistic), n - 1))


def holm(p_values: dict) -> dict:
    """Holm's step-down adjusted p-values: the k-th smallest of m is multiplied by m - k + 1, and
    kept at least as large as the ones before it (nan stays nan and does not count)."""
    ranked = sorted((p, key) for key, p in p_values.items() if not math.isnan(p))
    m, running, adjusted = len(ranked), 0.0, {key: math.nan for key in p_values}
    for k, (p, key) in enumerate(ranked):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[key] = running
    return adjusted


def summarize(results: list[dict], names: list[str]) -> list[dict]:
    """One row per experiment: mean, sample std and 95% CI over its successful seeds; for test
    accuracy and gap, the paired difference from the baseline (per seed, mean, 95% interval, p,
    Holm-corrected p) and whether it is marked."""
    rows = []
    for name in names:
        runs = [r for r in results if r["experiment"] == name]
        ok = [r for r in runs if r["status"] == "ok"]
        row: dict = {"experiment": name, "runs_ok": len(ok), "runs_failed": len(runs) - len(ok),
                     "failure": "; ".join(sorted({r["reason"] for r in runs if r["status"] != "ok"})),
                     "seeds": " ".join(str(r["seed"]) for r in ok)}
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_ci95"] = mean_std_ci(
                [float(r[metric]) for r in ok])
        rows.append(row)
    baseline = {r["seed"]: r for r in results if r["experiment"] == "baseline" and r["status"] == "ok"}
    p_values = {}
    for row in rows:
        mine = {r["seed"]: r for r in results if r["experiment"] == row["experiment"] and r["status"] == "ok"}
        for metric in MARKED:
            seeds = sorted(set(mine) & set(baseline)) if row["experiment"] != "baseline" else []
            differences = [float(mine[s][metric]) - float(baseline[s][metric]) for s in seeds]
            mean, ci, p = paired_t(differences) if differences else (math.nan, math.nan, math.nan)
            row.update({f"{metric}_diff_mean": mean, f"{metric}_diff_ci95": ci, f"{metric}_diff_p": p,
                        f"{metric}_diff_by_seed": " ".join(f"{s}:{d:+.6f}" for s, d in zip(seeds, differences))})
            p_values[(row["experiment"], metric)] = p
    adjusted = holm(p_values)
    for row in rows:
        for metric in MARKED:
            p = adjusted[(row["experiment"], metric)]
            row[f"{metric}_diff_p_holm"] = p
            row[f"{metric}_differs"] = bool(not math.isnan(p) and p < ALPHA)
    return rows


def replication(first: list[dict], second: list[dict]) -> list[dict]:
    """The comparisons marked on either seed set, and whether each replicated. The first set's marks
    are the discoveries (Holm over the whole table); the second, disjoint set tests only those, so
    its Holm correction runs over the discoveries alone: a discovery replicates where that
    corrected p-value is below 0.05 with the same sign. A mark of the second set alone is listed,
    not claimed."""
    again = {r["experiment"]: r for r in second}
    discoveries = {(r["experiment"], m): r for r in first for m in MARKED if r[f"{m}_differs"] and r["experiment"] in again}
    adjusted = holm({key: again[key[0]][f"{key[1]}_diff_p"] for key in discoveries})
    found = []
    for row in first:
        other = again.get(row["experiment"])
        for metric in MARKED:
            key = (row["experiment"], metric)
            if other is None or not (key in discoveries or other[f"{metric}_differs"]):
                continue
            same_sign = math.copysign(1, row[f"{metric}_diff_mean"]) == math.copysign(1, other[f"{metric}_diff_mean"])
            p = adjusted.get(key, math.nan)
            found.append({"experiment": row["experiment"], "metric": metric, "first": row, "second": other,
                          "discovery": key in discoveries, "p_replication": p,
                          "replicated": bool(key in discoveries and p < ALPHA and same_sign)})
    return found
