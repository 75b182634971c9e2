"""A curve: the baseline at each value of one setting, drawn as the lecture draws it: clean-train
and validation accuracy, bias and variance over the value, mean and 95% band over seeds (none under
3 seeds; cut to the range a figure can take), and the diagnosis at each point (curve.md, curve.png).
A learning curve sweeps the data (``--sweep data.train_size=...``) or the network's width; a dose
curve a technique's strength (``--sweep penalty.l2=0,0.001,...``): variance falls with it and,
past some strength, bias rises (underfitting)."""

from __future__ import annotations

import math
from pathlib import Path

from project.lab.stats import mean_std_ci
from project.model.diagnosis import Diagnosis

SHORT = {"high bias and high variance": "high bias\n+ variance", "high bias (underfitting)": "high\nbias",
         "high variance (overfitting)": "high\nvariance", "low bias and low variance": "low\nboth"}
HUMAN_ACCURACY, TOLERANCE = 1.0, 0.02  # the model's defaults (model.human_accuracy, model.diagnosis_tolerance)
MIN_SEEDS = 3  # fewer seeds give a t-interval too wide to read (two seeds: 12.7 standard errors): no band
# where each figure can lie: accuracies and bias in [0, 1]; variance (the gap) in [-1, 1]
RANGE = {"train_acc": (0.0, 1.0), "val_acc": (0.0, 1.0), "test_acc": (0.0, 1.0), "bias": (0.0, 1.0),
         "variance": (-1.0, 1.0)}


def curve_points(rows: list[dict], results: list[dict]) -> list[dict]:
    """Per swept value: each figure's mean and 95% interval over seeds, cut to the range the figure
    can take (no band under 3 seeds: nan), and the verdict of the means."""
    points = []
    for row in rows:
        runs = [r for r in results if r["experiment"] == row["experiment"] and r["status"] == "ok"]
        if not runs:
            continue
        point = {"value": row["experiment"].partition("=")[2], "runs": len(runs)}
        figures = {"train_acc": [r["train_acc"] for r in runs], "val_acc": [r["train_acc"] - r["gap"] for r in runs],
                   "test_acc": [r["test_acc"] for r in runs], "bias": [r["bias"] for r in runs],
                   "variance": [r["variance"] for r in runs]}
        for key, values in figures.items():
            point[key], _, half = mean_std_ci([float(v) for v in values])
            if len(runs) < MIN_SEEDS:
                half = math.nan
            low, high = RANGE[key]
            point[f"{key}_low"], point[f"{key}_high"] = ((math.nan, math.nan) if math.isnan(half) else
                                                         (max(low, point[key] - half), min(high, point[key] + half)))
        point["verdict"] = Diagnosis(point["train_acc"], point["val_acc"], HUMAN_ACCURACY, TOLERANCE).verdict
        points.append(point)
    return points


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def write_curve(sweep: str, rows: list[dict], results: list[dict], out_dir: Path, title: str, echo=print) -> None:
    """curve.md (the table: mean [95% interval] at each value, and the diagnosis) and curve.png."""
    setting = sweep.partition("=")[0]
    points = curve_points(rows, results)
    if not points:
        return
    seeds = sorted({r["seed"] for r in results})
    thin = [p["value"] for p in points if p["runs"] < MIN_SEEDS]
    warning = (f"warning: {setting}={', '.join(thin)} ran on fewer than {MIN_SEEDS} seeds: no interval or band there "
               f"(two seeds' 95% interval is 12.7 standard errors wide); run SEEDS with {MIN_SEEDS} or more")
    if thin:
        echo(warning)

    def cell(point: dict, key: str, sign: str = "") -> str:
        if math.isnan(point[f"{key}_low"]):
            return f"{point[key]:{sign}.3f}"
        return f"{point[key]:{sign}.3f} [{point[f'{key}_low']:{sign}.3f}, {point[f'{key}_high']:{sign}.3f}]"

    lines = [f"Curve over {setting}: mean [95% interval, cut to the range a figure can take] over seeds "
             f"{', '.join(map(str, seeds))}. bias = {HUMAN_ACCURACY:g} - clean train accuracy; variance = clean train "
             f"- validation accuracy (the gap); high above {TOLERANCE:g}.", *([warning] if thin else []), "",
             f"| {setting} | clean train acc | val acc | test acc | bias | variance | diagnosis | runs |",
             "|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['value']} | {cell(p, 'train_acc')} | {cell(p, 'val_acc')} | {cell(p, 'test_acc')} | "
                     f"{cell(p, 'bias', '+')} | {cell(p, 'variance', '+')} | {p['verdict']} | {p['runs']} |")
    (out_dir / "curve.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    numbers = [_number(p["value"]) for p in points]
    numeric = all(n is not None for n in numbers)
    x = np.array(numbers if numeric else range(len(points)), dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), dpi=100)
    for ax, keys in ((axes[0], (("train_acc", "clean train accuracy", "tab:blue"), ("val_acc", "validation accuracy",
                                                                                     "tab:orange"))),
                     (axes[1], (("bias", "bias = 1 - clean train acc", "tab:red"),
                                ("variance", "variance (gap) = clean train - val acc", "tab:purple")))):
        for key, label, color in keys:
            mean = np.array([p[key] for p in points])
            ax.plot(x, mean, "o-", color=color, label=label)
            low, high = np.array([p[f"{key}_low"] for p in points]), np.array([p[f"{key}_high"] for p in points])
            ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)  # nan (under 3 seeds): no band
        positive = [v for v in x if v > 0]
        if numeric and min(x) > 0 and max(x) / min(x) >= 10:
            ax.set_xscale("log")
        elif numeric and min(x) == 0 and len(positive) > 1 and max(positive) / min(positive) >= 10:
            ax.set_xscale("symlog", linthresh=min(positive))  # a dose from 0: log-spaced, 0 at the left
        ax.set_xticks(x, [p["value"] if ax is axes[0] else f"{p['value']}\n{SHORT[p['verdict']]}" for p in points],
                      fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(setting)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    axes[0].set_ylabel("accuracy (mean, 95% band over seeds)")
    axes[0].set_title("clean train and validation accuracy", fontsize=11)
    axes[1].axhline(TOLERANCE, color="gray", linestyle=":", linewidth=1)
    axes[1].text(x[0], TOLERANCE, f" tolerance {TOLERANCE:g}", color="gray", va="bottom", fontsize=8)
    axes[1].set_title("bias and variance (the lecture's definitions)", fontsize=11)
    axes[1].set_xlabel(f"{setting} (and the diagnosis of the means)")
    fig.suptitle(f"{title}: over {setting}", fontsize=12)
    fig.tight_layout()
    fig.savefig(out_dir / "curve.png")
    plt.close(fig)
