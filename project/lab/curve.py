"""A learning curve: the baseline at each value of one setting (``--sweep data.train_size=...``),
drawn as the lecture draws it: clean-train and validation accuracy, bias and variance over the
swept value, mean and 95% band over seeds, and the diagnosis at each point (curve.md, curve.png)."""

from __future__ import annotations

import math
from pathlib import Path

from project.lab.stats import mean_std_ci
from project.model.diagnosis import Diagnosis

SHORT = {"high bias and high variance": "high bias\n+ variance", "high bias (underfitting)": "high\nbias",
         "high variance (overfitting)": "high\nvariance", "low bias and low variance": "low\nboth"}
HUMAN_ACCURACY, TOLERANCE = 1.0, 0.02  # the model's defaults (model.human_accuracy, model.diagnosis_tolerance)


def curve_points(rows: list[dict], results: list[dict]) -> list[dict]:
    """Per swept value: each figure's mean and 95% half-width over seeds, and the verdict of the means."""
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
            point[key], _, point[f"{key}_ci95"] = mean_std_ci([float(v) for v in values])
        point["verdict"] = Diagnosis(point["train_acc"], point["val_acc"], HUMAN_ACCURACY, TOLERANCE).verdict
        points.append(point)
    return points


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def write_curve(sweep: str, rows: list[dict], results: list[dict], out_dir: Path, title: str) -> None:
    setting = sweep.partition("=")[0]
    points = curve_points(rows, results)
    if not points:
        return
    seeds = sorted({r["seed"] for r in results})

    def cell(point: dict, key: str, sign: str = "") -> str:
        ci = point[f"{key}_ci95"]
        return f"{point[key]:{sign}.3f}" + ("" if math.isnan(ci) else f" ± {ci:.3f}")

    lines = [f"Learning curve over {setting}: mean ± 95% half-width over seeds {', '.join(map(str, seeds))}. "
             f"bias = {HUMAN_ACCURACY:g} - clean train accuracy; variance = clean train - validation accuracy "
             f"(high above {TOLERANCE:g}).", "",
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
                                ("variance", "variance = clean train - val acc", "tab:purple")))):
        for key, label, color in keys:
            mean = np.array([p[key] for p in points])
            ci = np.nan_to_num(np.array([p[f"{key}_ci95"] for p in points]))
            ax.plot(x, mean, "o-", color=color, label=label)
            low, high = (mean - ci, mean + ci) if "acc" not in key else ((mean - ci).clip(0, 1), (mean + ci).clip(0, 1))
            ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
        if numeric and min(x) > 0 and max(x) / min(x) >= 10:
            ax.set_xscale("log")
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
    fig.suptitle(f"{title}: learning curve over {setting}", fontsize=12)
    fig.tight_layout()
    fig.savefig(out_dir / "curve.png")
    plt.close(fig)
