"""The lab's statistics: mean, spread and 95% interval over seeds, and which experiments differ.

Each experiment's runs are summarized over their successful seeds; an experiment is marked where
its 95% interval on test accuracy or gap excludes the baseline's mean.
"""

from __future__ import annotations

import math

# result key -> table header; all are the tested weights' figures except best val, epochs and seconds
METRICS = {"train_acc": "clean train acc", "best_val_acc": "best val acc", "test_acc": "test acc",
           "gap": "gap (clean train - val)", "bias": "bias", "variance": "variance",
           "weight_norm": "weight L2 norm", "zero_fraction": "zero fraction", "epochs_to_best": "epochs to best",
           "wall_s": "wall s"}
MARKED = ("test_acc", "gap")  # a mark where the experiment's 95% CI excludes the baseline's mean


def mean_std_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of the 95% t-interval of the mean."""
    from scipy.stats import t

    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std, float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def summarize(results: list[dict], names: list[str]) -> list[dict]:
    """One row per experiment: mean, sample std and 95% CI over its successful seeds, and whether the
    CI on test accuracy or gap excludes the baseline's mean."""
    rows = []
    for name in names:
        runs = [r for r in results if r["experiment"] == name]
        ok = [r for r in runs if r["status"] == "ok"]
        row: dict = {"experiment": name, "runs_ok": len(ok), "runs_failed": len(runs) - len(ok),
                     "failure": "; ".join(sorted({r["reason"] for r in runs if r["status"] != "ok"}))}
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_ci95"] = mean_std_ci(
                [float(r[metric]) for r in ok])
        rows.append(row)
    baseline = next((r for r in rows if r["experiment"] == "baseline" and r["runs_ok"]), None)
    for row in rows:
        for metric in MARKED:
            row[f"{metric}_differs"] = bool(
                baseline is not None and row is not baseline and row["runs_ok"] > 1
                and abs(row[f"{metric}_mean"] - baseline[f"{metric}_mean"]) > row[f"{metric}_ci95"])
    return rows
