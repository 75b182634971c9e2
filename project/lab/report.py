"""What a study shows: results.csv, results.md (the table) and report.png (curves and bars), and
everything a study writes from its results (its curve or conclusions too), wherever they came from."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

from project.lab.conclusions import noise, write_conclusions
from project.lab.curve import write_curve
from project.lab.decide import from_study, progress
from project.lab.experiments import folder
from project.lab.stats import MARKED, METRICS, replication, summarize
from project.run.hparams import write_study_views

NAMES = {"test_acc": "test accuracy", "gap": "gap"}


def _cell(mean: float, ci: float, digits: int, sign: str = "") -> str:
    return f"{mean:{sign}.{digits}f}" + ("" if math.isnan(ci) else f" ± {ci:.{digits}f}")


def table(rows: list[dict], seeds: list[int], vary: str, note: str = "") -> list[str]:
    """The study's table as Markdown lines: each figure's mean ± 95% half-width, and for test
    accuracy and gap the paired difference from the baseline, marked * where it holds after the
    Holm correction."""
    header = ["experiment", *METRICS.values(), "runs"]
    header.insert(header.index("test acc") + 1, "Δ test acc")
    header.insert(header.index("gap (clean train - val)") + 1, "Δ gap")
    uneven = len({row["runs_ok"] for row in rows}) > 1
    lines = [f"Mean ± 95% confidence half-width over {'up to ' if uneven else ''}{len(seeds)} seeds "
             f"({_seeds(seeds)}; vary {vary}{'; each experiment on the seeds in its runs column' if uneven else ''}). "
             "Δ: the experiment minus the baseline on the same seed (same split, subset and initialization "
             "stream), mean ± 95% paired-t half-width; * : different from 0 after a Holm correction over the "
             f"{2 * max(0, len(rows) - 1)} comparisons of the table (p < 0.05).{note}", "",
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


def write_machines(results: dict, out_dir: Path) -> Path:
    """runs.csv of a shared study: which machine ran each run, its trial and seconds, where its log
    folder is (on that machine)."""
    rows = [{"experiment": e, "seed": s, "status": r["status"], "host": r.get("host", ""), "pid": r.get("pid", ""),
             "trial": r.get("trial", ""),
             "wall_s": round(r["wall_s"], 1), "log_folder": f"runs/{folder(e)}/seed_{s}"} for (e, s), r in sorted(
                 results.items(), key=lambda item: (item[0][0], item[0][1]))]
    _csv(rows, out_dir / "runs.csv")
    return out_dir / "runs.csv"


def _csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_tables(rows: list[dict], out_dir: Path, seeds: list[int], vary: str, second: list[dict] | None = None,
                 second_seeds: list[int] | None = None, note: str = "") -> None:
    """results.csv and results.md; with a second seed set, results_replicate.csv, and in results.md
    its table and what replicated (the lab's verdicts are DECIDE=1's conclusions.md)."""
    _csv(rows, out_dir / "results.csv")
    lines = table(rows, seeds, vary, note)
    if second is not None:
        _csv(second, out_dir / "results_replicate.csv")
        found = replication(rows, second)
        text = conclusions(found, seeds, second_seeds)
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
    """One line per discovery of the first seed set that replicated on the second, with the figures
    of both; then the marks that did not replicate: undecided on these seeds (``make compare
    DECIDE=1`` adds seeds until each comparison is decided)."""
    a, b = _seeds(first_seeds), _seeds(second_seeds)
    carried = sum(f["discovery"] for f in found)
    lines = [f"Replicated: marked on seeds {a} (paired difference from the baseline, Holm over the table), then "
             f"confirmed on the disjoint seeds {b} (Holm over the {carried} marks carried over), same sign; "
             "difference [95% interval]:"]
    held = [f for f in found if f["replicated"]]
    for f in held:
        lines.append(f"- **{f['experiment']}**: {NAMES[f['metric']]} {_figure(f['first'], f['metric'])} on seeds {a}, "
                     f"{_figure(f['second'], f['metric'])} on seeds {b}")
    if not held:
        lines.append("- nothing")
    lines.append("Not replicated: undecided on these seeds, neither an effect nor its absence (`make compare "
                 "DECIDE=1` adds seeds until decided):")
    missed = [f for f in found if not f["replicated"]]
    for f in missed:
        why = (f"marked on seeds {a}, not confirmed on seeds {b}" if f["discovery"] else
               f"marked on seeds {b} only")
        lines.append(f"- {f['experiment']}: {NAMES[f['metric']]} {_figure(f['first'], f['metric'])} on seeds {a}, "
                     f"{_figure(f['second'], f['metric'])} on seeds {b} ({why})")
    if not missed:
        lines.append("- nothing")
    return lines


def write_report(rows: list[dict], results: list[dict], out_dir: Path, title: str, entries: list[dict] | None = None,
                 hidden: set[str] = frozenset()) -> None:
    """report.png: clean-train and validation accuracy per experiment (mean and band over the seeds
    still training at each epoch, a note where early stopping ended runs; not the ``hidden`` ones, a
    tuned arm's grid points), then each experiment's paired difference from the baseline in test
    accuracy and gap with its 95% interval (a star where the table marks it), and the weights' L2
    norm and zero fraction. A decided study (``entries``) shows its claims and their verdicts
    instead of the table's differences and marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [r for r in rows if r["runs_ok"] and r["experiment"] not in hidden]
    if not shown:
        return
    columns = min(5, len(shown))
    curve_rows = math.ceil(len(shown) / columns)
    bottom = max(4.6, 0.34 * len(entries) + 1.6) if entries else 4.6
    fig = plt.figure(figsize=(4.2 * max(columns, 4), 3.4 * curve_rows + bottom), dpi=100)
    columns = max(columns, 4) if entries else columns
    grid = fig.add_gridspec(curve_rows + 1, 3 * columns, height_ratios=[1] * curve_rows + [bottom / 3.4])
    curves_by_experiment, lengths, every = {}, {}, {}
    for row in shown:
        runs = [r for r in results if r["experiment"] == row["experiment"] and r["status"] == "ok"]
        lengths[row["experiment"]] = [len(r["val_acc_curve"]) * r.get("val_every", 1) for r in runs]
        every[row["experiment"]] = runs[0].get("val_every", 1)
        curves_by_experiment[row["experiment"]] = {
            key: [r[key] for r in runs] for key in ("train_acc_curve", "val_acc_curve")}
    # every epoch from the first is on the axes: the lowest mean anywhere sets the bottom
    low = min((_ragged(c)[0].min() for curves in curves_by_experiment.values() for c in curves.values()
               if any(c)), default=0.0)  # (a data module of the user's own may have no clean-train curve)
    low = max(0.0, math.floor((low - 0.02) * 20) / 20)
    for i, row in enumerate(shown):
        ax = fig.add_subplot(grid[i // columns, 3 * (i % columns): 3 * (i % columns) + 3])
        for key, color, label in (("train_acc_curve", "tab:blue", "train (clean)"), ("val_acc_curve", "tab:orange", "val")):
            if not any(curves_by_experiment[row["experiment"]][key]):
                continue
            mean, std = _ragged(curves_by_experiment[row["experiment"]][key])
            epochs = every[row["experiment"]] * np.arange(1, len(mean) + 1)  # (a study validates every 3 epochs)
            ax.plot(epochs, mean, color=color, label=label, linewidth=1.6)
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set_ylim(low, 1.005)
        ax.set_title(f"{labels_of(row['experiment'])}  (n={row['runs_ok']})", fontsize=9)
        ended = sorted(lengths[row["experiment"]])
        if ended[0] != ended[-1]:  # early stopping ended some runs: the curves average those still going
            for epoch in sorted(set(ended[:-1])):
                ax.axvline(epoch, color="gray", linestyle=":", linewidth=0.8)
            ax.text(0.02, 0.03, f"stopped early at epochs {', '.join(map(str, ended))}", transform=ax.transAxes,
                    fontsize=7, color="dimgray")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8, loc="lower right")
            ax.set_ylabel("accuracy (mean ± 1 std)")
        if i // columns == curve_rows - 1:
            ax.set_xlabel("epoch")
    names = [r["experiment"] for r in shown]
    # a sweep's point by its last key: width=0.25 for model.net.init_args.width=0.25
    labels = [labels_of(n) for n in names]
    x = np.arange(len(shown))
    panels = [("test_acc_diff_mean", "test_acc_diff_ci95", "Δ test accuracy vs baseline (paired by seed, 95% CI)"),
              ("gap_diff_mean", "gap_diff_ci95", "Δ gap (clean train - val acc) vs baseline (paired, 95% CI)"),
              ("weight_norm_mean", "weight_norm_ci95", "weight L2 norm (bars), zero fraction (dots)")]
    if all(math.isnan(r["test_acc_diff_mean"]) for r in shown):  # no baseline (a sweep): the figures themselves
        panels[:2] = [("test_acc_mean", "test_acc_ci95", "test accuracy (95% CI)"),
                      ("gap_mean", "gap_ci95", "gap: clean train acc - val acc (95% CI)")]
    if entries:  # the page's verdicts, not the table's fixed-sample marks
        draw_claims(fig.add_subplot(grid[curve_rows, : 2 * columns]), entries)
        panels = panels[2:]
    for j, (mean_key, ci_key, label) in enumerate(panels, 2 if entries else 0):
        ax = fig.add_subplot(grid[curve_rows, j * columns: (j + 1) * columns])
        means = np.array([r[mean_key] for r in shown])
        cis = np.nan_to_num(np.array([r[ci_key] for r in shown]))
        colors = ["tab:gray" if n == "baseline" else "tab:blue" for n in names]
        if mean_key == "weight_norm_mean":
            ax.bar(x, means, yerr=cis, color=colors, capsize=3)
            twin = ax.twinx()
            twin.plot(x, [r["zero_fraction_mean"] for r in shown], "o", color="tab:red")
            twin.set_ylabel("fraction of weights exactly 0", color="tab:red", fontsize=8)
            twin.set_ylim(0, max(0.05, 1.1 * max(r["zero_fraction_mean"] for r in shown)))
        else:  # points with whiskers: an accuracy axis need not start at 0 to be honest
            ax.errorbar(x, means, yerr=cis, fmt="none", ecolor="black", capsize=4, linewidth=1)
            ax.scatter(x, means, c=colors, zorder=3)
            marked = [k for k, r in enumerate(shown) if r.get(f"{mean_key.removesuffix('_diff_mean')}_differs")]
            if marked:
                ax.scatter(x[marked], means[marked], marker="*", s=140, color="tab:red", zorder=4,
                           label="differs from baseline (paired, Holm)")
        if "_diff_" in mean_key:
            ax.axhline(0, color="black", linestyle="--", linewidth=1, label="no difference")
        elif "baseline" in names and mean_key == "weight_norm_mean":
            ax.axhline(shown[names.index("baseline")][mean_key], color="black", linestyle="--", linewidth=1,
                       label="baseline mean")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=12)
    with warnings.catch_warnings():  # a crowded study: tight_layout does what it can, and says so
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_size_inches()[1]))  # the title's line stays its own
    fig.savefig(out_dir / "report.png")
    plt.close(fig)


VERDICT_STYLE = {"effect": ("o", "tab:blue", "effect"), "no effect": ("D", "tab:green", "no effect"),
                 "undecided": ("o", "tab:gray", "undecided")}


def draw_claims(ax, entries: list[dict]) -> None:
    """Each claim's difference and interval in units of its own margin (so a -0.81 and a -0.005 share
    one readable axis: linear within 3 margins, logarithmic beyond), marked by the page's verdict."""
    count = len(entries)
    for k, e in enumerate(entries):
        y, margin = count - 1 - k, e["margin"]
        marker, color, _ = VERDICT_STYLE[e["verdict"]]
        if not math.isnan(e["low"]):
            ax.plot([e["low"] / margin, e["high"] / margin], [y, y], color=color, linewidth=2)
        ax.plot(e["estimate"] / margin, y, marker=marker, color=color, markersize=7,
                markerfacecolor="white" if e["verdict"] == "undecided" else color)
    ax.axvspan(-1, 1, color="tab:green", alpha=0.08, linewidth=0)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xscale("symlog", linthresh=3)
    low, high = ax.get_xlim()
    low, high = min(low, -1.5), max(high, 1.5)  # the band's both edges carry a tick, however one-sided the claims
    ticks = [t for t in (-1000, -300, -100, -30, -10, -3, -1, 0, 1, 3, 10, 30, 100, 300, 1000) if low <= t <= high]
    ax.set_xlim(low, high)
    ax.set_xticks(ticks, [f"{t:+g}" if t else "0" for t in ticks], fontsize=7)
    ax.set_yticks(range(count), [f"{_short(e['claim'].claim)} (n={len(e['seeds'])})" for e in reversed(entries)],
                  fontsize=7)
    ax.set_ylim(-0.7, count - 0.3)
    for marker, color, label in VERDICT_STYLE.values():
        ax.plot([], [], marker=marker, color=color, linestyle="", label=label)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel("difference in units of the claim's margin (band: ±1 margin; symlog beyond ±3)", fontsize=8)
    ax.set_title("the claims: difference from the comparison and interval, marked by the page's verdict", fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def labels_of(name: str) -> str:
    """A sweep's point by its last key (width=0.25 for model.net.init_args.width=0.25); an experiment as named."""
    setting, _, value = name.partition("=")
    return f"{setting.rsplit('.', 1)[-1]}={value}" if value else name


def _ragged(curves: list[list[float]]):
    """Mean and std at each epoch over the runs that reached it (runs stopped early end sooner)."""
    import numpy as np

    longest = max(len(c) for c in curves)
    mean, std = np.zeros(longest), np.zeros(longest)
    for epoch in range(longest):
        values = np.array([c[epoch] for c in curves if len(c) > epoch])
        mean[epoch], std[epoch] = values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0
    return mean, std


def write_study(study: dict, results: dict, out_dir: Path, echo, minutes: float | None) -> tuple[list[dict], list[dict]]:
    """The study's tables, report, curve or conclusions from its results by (experiment, seed)."""
    experiments, second, vary, sweep = study["experiments"], study["second"], study["vary"], study["sweep"]
    seeds = study["seeds"]
    entries, tuning = None, None
    if study["plan"] is not None:
        claims, plan, tuning = from_study(study)
        entries = progress(claims, plan, results, tuning)[1]
        seeds = sorted({s for (_, s) in results} - set(plan.recheck_seeds(claims)))
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = [(e, s) for e in experiments for s in [*seeds, *second]]
    batches = {r.get("effective_batch") for r in results.values() if r["status"] == "ok"}
    if len(batches) > 1:  # a process count or a batch setting differs: steps are not comparable
        by = {e: sorted({r.get("effective_batch") for (x, _), r in results.items() if x == e and r["status"] == "ok"},
                        key=str) for e in experiments}
        echo("note: the runs of this study used different effective batches (per-process batch x processes x "
             f"accumulation): {'; '.join(f'{e} {v}' for e, v in by.items() if v)}; data.batch_size_total keeps one")
    ordered = [results[p] for p in pairs if p in results and p[1] in seeds]
    replicated = [results[p] for p in pairs if p in results and p[1] in second]
    rows = summarize(ordered, experiments)
    source = (study.get("baseline") or {}).get("source", "configs/experiment/baseline.yaml")
    title = (f"make compare: {out_dir.name}, {len(seeds)} seeds (vary {vary}), data set {', '.join(study['datasets'])}, "
             f"baseline {source}")
    note = (" The seeds came from a sequential plan that stopped each claim when decided: the * marks are this table's "
            "fixed-sample view, the verdicts valid under that stopping are in conclusions.md." if entries is not None else "")
    write_tables(rows, out_dir, seeds, vary, summarize(replicated, experiments) if second else None, second, note)
    hidden = {p for c in claims for arm in (c.experiment, c.against) for p in tuning.points(arm)} if entries and tuning \
        else set()
    write_report(rows, ordered, out_dir, title, entries, hidden)
    written = ["results.csv", "results.md", "report.png"] + (["results_replicate.csv"] if second else [])
    if entries is not None:
        write_conclusions(entries, plan, out_dir, minutes, study["command"], study.get("baseline"), tuning,
                          study.get("flags") or [], noise(entries, results, tuning))
        written += ["conclusions.md", "conclusions.json"]
    if sweep:
        write_curve(sweep, rows, ordered, out_dir, title, echo)
        written += ["curve.md", "curve.png"]
    if any("host" in r for r in results.values()):
        written.append(write_machines(results, out_dir).name)
    means = write_study_views(out_dir, ordered + replicated)
    shown = (out_dir / "conclusions.md") if entries is not None else (out_dir / "results.md")
    echo(f"\n{shown.read_text()}" + (f"\n{(out_dir / 'curve.md').read_text()}" if sweep else "")
         + f"\nwritten to {out_dir}/ ({', '.join(written)}); every run: tensorboard --logdir {out_dir / 'runs'}; "
         f"one chart per experiment: tensorboard --logdir {means}")
    return rows, ordered + replicated
