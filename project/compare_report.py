"""What a study shows: results.csv, results.md (the table) and report.png (curves and bars)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from project.compare_stats import MARKED, METRICS, replication

NAMES = {"test_acc": "test accuracy", "gap": "gap"}


def _cell(mean: float, ci: float, digits: int, sign: str = "") -> str:
    return f"{mean:{sign}.{digits}f}" + ("" if math.isnan(ci) else f" ± {ci:.{digits}f}")


def table(rows: list[dict], seeds: list[int], vary: str) -> list[str]:
    """The study's table as Markdown lines: each figure's mean ± 95% half-width, and for test
    accuracy and gap the paired difference from the baseline, marked * where it holds after the
    Holm correction."""
    header = ["experiment", *METRICS.values(), "runs"]
    header.insert(header.index("test acc") + 1, "Δ test acc")
    header.insert(header.index("gap (clean train - val)") + 1, "Δ gap")
    lines = [f"Mean ± 95% confidence half-width over {len(seeds)} seeds ({', '.join(map(str, seeds))}; vary {vary}). "
             "Δ: the experiment minus the baseline on the same seed (same split, subset and initialization "
             "stream), mean ± 95% paired-t half-width; * : different from 0 after a Holm correction over the "
             f"{2 * max(0, len(rows) - 1)} comparisons of the table (p < 0.05).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if not row["runs_ok"]:
            lines.append(f"| {row['experiment']} | failed: {row['failure']} |" + " |" * (len(header) - 2))
            continue
        cells = []
        for metric in METRICS:
            digits = 1 if metric in ("epochs_to_best", "wall_s", "weight_norm") else 3
            sign = "+" if metric in ("gap", "variance", "bias") else ""
            cells.append(_cell(row[f"{metric}_mean"], row[f"{metric}_ci95"], digits, sign))
            if metric in MARKED:
                diff = row[f"{metric}_diff_mean"]
                cells.append("" if math.isnan(diff) else _cell(diff, row[f"{metric}_diff_ci95"], 3, "+")
                             + (" *" if row[f"{metric}_differs"] else ""))
        runs = f"{row['runs_ok']}" + (f" ({row['runs_failed']} failed: {row['failure']})" if row["runs_failed"] else "")
        lines.append("| " + " | ".join([row["experiment"], *cells, runs]) + " |")
    return lines


def _csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_tables(rows: list[dict], out_dir: Path, seeds: list[int], vary: str, second: list[dict] | None = None,
                 second_seeds: list[int] | None = None) -> None:
    """results.csv and results.md; with a second seed set, results_replicate.csv, its table, and
    conclusions.md: what replicated."""
    _csv(rows, out_dir / "results.csv")
    lines = table(rows, seeds, vary)
    if second is not None:
        _csv(second, out_dir / "results_replicate.csv")
        found = replication(rows, second)
        text = conclusions(found, seeds, second_seeds)
        (out_dir / "conclusions.md").write_text("\n".join(text) + "\n")
        lines += ["", f"Replication on seeds {', '.join(map(str, second_seeds))}:", "", *table(second, second_seeds, vary),
                  "", *text]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")


def _seeds(seeds: list[int]) -> str:
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2 else \
        ",".join(map(str, seeds))


def _figure(row: dict, metric: str) -> str:
    mean, ci = row[f"{metric}_diff_mean"], row[f"{metric}_diff_ci95"]
    return f"{mean:+.3f} [{mean - ci:+.3f}, {mean + ci:+.3f}]"


def conclusions(found: list[dict], first_seeds: list[int], second_seeds: list[int]) -> list[str]:
    """One line per comparison that replicated (marked on both seed sets, same sign), with the
    figures of both; then the marks that did not replicate, which the lab does not claim."""
    a, b = _seeds(first_seeds), _seeds(second_seeds)
    lines = [f"Replicated (paired difference from the baseline [95% interval], marked after the Holm correction on "
             f"seeds {a} and again on the disjoint seeds {b}):"]
    held = [f for f in found if f["replicated"]]
    for f in held:
        lines.append(f"- **{f['experiment']}**: {NAMES[f['metric']]} {_figure(f['first'], f['metric'])} on seeds {a}, "
                     f"{_figure(f['second'], f['metric'])} on seeds {b}")
    if not held:
        lines.append("- nothing")
    lines.append("Marked on one seed set only, so not claimed:")
    missed = [f for f in found if not f["replicated"]]
    for f in missed:
        where = a if f["first"][f"{f['metric']}_differs"] else b
        lines.append(f"- {f['experiment']}: {NAMES[f['metric']]} {_figure(f['first'], f['metric'])} on seeds {a}, "
                     f"{_figure(f['second'], f['metric'])} on seeds {b} (marked on seeds {where} only)")
    if not missed:
        lines.append("- nothing")
    return lines


def write_report(rows: list[dict], results: list[dict], out_dir: Path, title: str) -> None:
    """report.png: clean-train and validation curves per experiment (mean and band over seeds),
    gap and test error with 95% CI whiskers, and the weights' L2 norm and zero fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [r for r in rows if r["runs_ok"]]
    if not shown:
        return
    columns = min(5, len(shown))
    curve_rows = math.ceil(len(shown) / columns)
    fig = plt.figure(figsize=(4 * columns, 3.2 * curve_rows + 4.2), dpi=100)
    grid = fig.add_gridspec(curve_rows + 1, 3 * columns, height_ratios=[1] * curve_rows + [1.3])
    lows = []
    curves_by_experiment = {}
    for row in shown:
        runs = [r for r in results if r["experiment"] == row["experiment"] and r["status"] == "ok"]
        length = min(len(r["val_acc_curve"]) for r in runs)
        curves = {key: np.array([r[key][:length] for r in runs]) for key in ("train_acc_curve", "val_acc_curve")}
        curves_by_experiment[row["experiment"]] = curves
        lows.append(curves["val_acc_curve"].mean(axis=0)[min(length - 1, max(1, length // 5)):].min())
    low = max(0.0, min(lows) - 0.03)
    for i, row in enumerate(shown):
        ax = fig.add_subplot(grid[i // columns, 3 * (i % columns): 3 * (i % columns) + 3])
        for key, color, label in (("train_acc_curve", "tab:blue", "train (clean)"), ("val_acc_curve", "tab:orange", "val")):
            values = curves_by_experiment[row["experiment"]][key]
            epochs = np.arange(1, values.shape[1] + 1)
            mean, std = values.mean(axis=0), values.std(axis=0, ddof=1) if len(values) > 1 else 0 * values[0]
            ax.plot(epochs, mean, color=color, label=label, linewidth=1.6)
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set_ylim(low, 1.005)
        ax.set_title(f"{row['experiment']}  (n={row['runs_ok']})", fontsize=10)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8, loc="lower right")
            ax.set_ylabel("accuracy (mean ± 1 std)")
        if i // columns == curve_rows - 1:
            ax.set_xlabel("epoch")
    names = [r["experiment"] for r in shown]
    x = np.arange(len(shown))
    panels = [("gap_mean", "gap_ci95", "gap: clean train acc - val acc", None),
              ("test_acc_mean", "test_acc_ci95", "test error: 1 - test acc", lambda v: 1 - v),
              ("weight_norm_mean", "weight_norm_ci95", "weight L2 norm (bars); zero fraction (dots)", None)]
    width = columns
    for j, (mean_key, ci_key, label, transform) in enumerate(panels):
        ax = fig.add_subplot(grid[curve_rows, j * width: (j + 1) * width])
        means = np.array([r[mean_key] for r in shown])
        means = transform(means) if transform else means
        cis = np.nan_to_num(np.array([r[ci_key] for r in shown]))
        colors = ["tab:gray" if n == "baseline" else "tab:blue" for n in names]
        ax.bar(x, means, yerr=cis, color=colors, capsize=3)
        base = shown[names.index("baseline")] if "baseline" in names else None
        if base is not None:
            ax.axhline(transform(base[mean_key]) if transform else base[mean_key], color="black", linestyle="--",
                       linewidth=1, label="baseline mean")
            ax.legend(fontsize=8)
        if mean_key == "weight_norm_mean":
            twin = ax.twinx()
            twin.plot(x, [r["zero_fraction_mean"] for r in shown], "o", color="tab:red")
            twin.set_ylabel("fraction of weights exactly 0", color="tab:red")
            twin.set_ylim(0, max(0.05, 1.1 * max(r["zero_fraction_mean"] for r in shown)))
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        ax.set_title(label + "  (95% CI)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(out_dir / "report.png")
    plt.close(fig)
