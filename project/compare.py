"""The lab: run experiments over several seeds and report what each technique did to the gap.

    python -m project.compare --experiments baseline,dropout,l2 --seeds 0,1,2 --name my_study

Each run is an ordinary ``project fit`` with ``configs/experiment/baseline.yaml`` and the
experiment's own file, logged under ``logs/compare/<name>/runs/<experiment>/seed_<seed>/`` so that
one TensorBoard overlays them all. A run that finished leaves ``result.json`` beside its logs; a
rerun skips it, and re-runs from scratch any run that was interrupted or failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

from project.cli import CONFIG_DIR, ProjectCLI

EXPERIMENT_DIR = CONFIG_DIR / "experiment"
TECHNIQUES = ["baseline", "l1", "l2", "weight_decay", "dropout", "batchnorm", "augment", "early_stopping",
              "label_smoothing", "all"]
METRICS = ["train_acc", "best_val_acc", "test_acc", "gap", "epochs_to_best", "wall_s"]


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def experiment_args(name: str) -> list[str]:
    """The config files of one experiment: the baseline, then its own overrides."""
    files = [EXPERIMENT_DIR / "baseline.yaml"] + ([EXPERIMENT_DIR / f"{name}.yaml"] if name != "baseline" else [])
    return [arg for f in files for arg in ("--config", str(f))]


def run_args(name: str, seed: int, runs_dir: Path, extra: list[str]) -> list[str]:
    return ["fit", *experiment_args(name), *extra, f"--seed_everything={seed}",
            f"--trainer.logger.init_args.save_dir={runs_dir}", f"--trainer.logger.init_args.name={name}",
            f"--trainer.logger.init_args.version=seed_{seed}", "--trainer.enable_model_summary=false",
            "--trainer.enable_progress_bar=false"]


def check_configs(names: list[str], extra: list[str]) -> None:
    """Parse every experiment's config before any run starts, so a typo costs seconds, not a study."""
    unknown = sorted(set(names) - set(available_experiments()))
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; available: {available_experiments()}")
    for name in names:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                ProjectCLI(args=run_args(name, 0, Path("unused"), extra)[1:], run=False)  # parse, no fit
        except SystemExit:
            raise ValueError(f"experiment {name!r}: {stderr.getvalue().strip().splitlines()[-1]}") from None


def run_one(name: str, seed: int, runs_dir: Path, extra: list[str], isolated: bool = False) -> dict:
    """Train one experiment with one seed; its output goes to stdout.txt in its log folder.

    ``isolated`` runs it as its own ``python -m project`` process: needed when the trainer starts
    processes of its own (DDP re-launches the command it was started with).
    """
    run_dir = runs_dir / name / f"seed_{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a half-finished earlier attempt is not half-counted
    run_dir.mkdir(parents=True)
    result: dict = {"experiment": name, "seed": seed}
    args = run_args(name, seed, runs_dir, extra)
    started = time.perf_counter()
    with open(run_dir / "stdout.txt", "w") as out:
        if isolated:
            done = subprocess.run([sys.executable, "-m", "project", *args], stdout=out, stderr=subprocess.STDOUT)
            failure = None if done.returncode == 0 else _last_line(run_dir / "stdout.txt")
        else:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    ProjectCLI(args=args)
                    failure = None
                except SystemExit as err:
                    failure = f"bad configuration (exit {err.code}), see {run_dir}/stdout.txt"
                except Exception as err:  # a failed run is reported, and the study goes on
                    failure = f"{type(err).__name__}: {err}"
    result["wall_s"] = time.perf_counter() - started
    if failure:
        result.update(status="failed", reason=failure.splitlines()[0][:300])
    else:
        logged = _logged(run_dir)
        curve = logged["val/acc"]
        result.update(status="ok", reason="", train_acc=logged["train/acc"][-1], best_val_acc=max(curve),
                      test_acc=logged["test/acc"][-1], gap=logged["gap/acc"][-1],
                      epochs_to_best=1 + curve.index(max(curve)), epochs=len(curve), val_acc_curve=curve)
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or line.startswith("error:")]
    return (errors or lines or ["failed with no output"])[-1]


def _logged(run_dir: Path) -> dict[str, list[float]]:
    """The run's own TensorBoard scalars: the table is built from what the run logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in ("train/acc", "val/acc", "test/acc", "gap/acc")}


def summarize(results: list[dict], names: list[str]) -> list[dict]:
    """One row per experiment: mean and spread (sample std) over its successful seeds."""
    rows = []
    for name in names:
        runs = [r for r in results if r["experiment"] == name]
        ok = [r for r in runs if r["status"] == "ok"]
        row: dict = {"experiment": name, "runs_ok": len(ok), "runs_failed": len(runs) - len(ok),
                     "failure": "; ".join(sorted({r["reason"] for r in runs if r["status"] != "ok"}))}
        for metric in METRICS:
            values = [float(r[metric]) for r in ok]
            mean = sum(values) / len(values) if values else math.nan
            spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean, spread if values else math.nan
        rows.append(row)
    return rows


def write_tables(rows: list[dict], out_dir: Path) -> None:
    columns = list(rows[0])
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    header = ["experiment", "train acc", "best val acc", "test acc", "gap (train - val)", "epochs to best",
              "wall s", "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if not row["runs_ok"]:
            lines.append(f"| {row['experiment']} | failed: {row['failure']} |" + " |" * (len(header) - 2))
            continue
        cells = [f"{row[f'{m}_mean']:.3f} ± {row[f'{m}_std']:.3f}" for m in METRICS[:4]]
        cells += [f"{row['epochs_to_best_mean']:.1f}", f"{row['wall_s_mean']:.1f}"]
        runs = f"{row['runs_ok']}" + (f" ({row['runs_failed']} failed: {row['failure']})" if row["runs_failed"] else "")
        lines.append("| " + " | ".join([row["experiment"], *cells, runs]) + " |")
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")


def write_report(rows: list[dict], results: list[dict], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(15, 6), dpi=100)
    for row in rows:
        runs = [r["val_acc_curve"] for r in results if r["experiment"] == row["experiment"] and r["status"] == "ok"]
        if not runs:
            continue
        length = min(len(c) for c in runs)
        mean = [sum(c[i] for c in runs) / len(runs) for i in range(length)]
        curves.plot(range(1, length + 1), mean, label=row["experiment"],
                    linewidth=2.5 if row["experiment"] == "baseline" else 1.2)
    curves.set(title="validation accuracy (mean over seeds)", xlabel="epoch", ylabel="val/acc")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8, ncol=2)
    names = [r["experiment"] for r in rows]
    x = range(len(rows))
    width = 0.4
    bars.bar([i - width / 2 for i in x], [r["gap_mean"] for r in rows], width, yerr=[r["gap_std"] for r in rows],
             label="gap: train acc - val acc")
    bars.bar([i + width / 2 for i in x], [1 - r["test_acc_mean"] for r in rows], width,
             yerr=[r["test_acc_std"] for r in rows], label="test error: 1 - test acc")
    bars.set_xticks(list(x), names, rotation=45, ha="right")
    bars.set(title="lower is better", ylabel="fraction")
    bars.grid(axis="y", alpha=0.3)
    bars.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "report.png")
    plt.close(fig)


def compare(experiments: list[str], seeds: list[int], name: str = "default", dataset: str | None = None,
            trainer_config: str | None = None, output: str = "logs/compare", extra: list[str] | None = None,
            echo=print) -> list[dict]:
    """Run every (experiment, seed) not already finished, then write the tables and the report."""
    extra = list(extra or [])
    if dataset:
        extra.append(f"--data.dataset={dataset}")
    if trainer_config:
        extra = ["--config", trainer_config, *extra]
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. 0,1")
    for logger in ("lightning.pytorch", "lightning.fabric"):  # each run's own output goes to its stdout.txt
        logging.getLogger(logger).setLevel(logging.WARNING)
    check_configs(experiments, extra)
    out_dir = Path(output) / name
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    total, results = len(experiments) * len(seeds), []
    for i, (experiment, seed) in enumerate(((e, s) for e in experiments for s in seeds), 1):
        done = runs_dir / experiment / f"seed_{seed}" / "result.json"
        previous = json.loads(done.read_text()) if done.exists() else None
        if previous and previous["status"] == "ok":
            result, how = previous, "done before, skipped"
        else:
            echo(f"[{i:>3}/{total}] {experiment} seed {seed} ...")
            result = run_one(experiment, seed, runs_dir, extra, isolated=trainer_config is not None)
            how = f"{result['wall_s']:.1f} s"
        summary = (f"test acc {result['test_acc']:.3f}  gap {result['gap']:+.3f}" if result["status"] == "ok"
                   else f"FAILED: {result['reason']}")
        echo(f"[{i:>3}/{total}] {experiment} seed {seed}: {summary}  ({how})")
        results.append(result)
    rows = summarize(results, experiments)
    write_tables(rows, out_dir)
    write_report(rows, results, out_dir)
    echo(f"\n{(out_dir / 'results.md').read_text()}\nwritten to {out_dir}/ (results.csv, results.md, report.png); "
         f"tensorboard --logdir {runs_dir}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m project.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default=",".join(TECHNIQUES),
                        help=f"comma-separated names from configs/experiment/ (default: {','.join(TECHNIQUES)})")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default: 0,1)")
    parser.add_argument("--name", default="default", help="the study's folder under --output")
    parser.add_argument("--dataset", default=None, help="override data.dataset for every run (digits, mnist ...)")
    parser.add_argument("--trainer-config", default=None, help="a trainer config, e.g. configs/trainer/ddp_cpu.yaml")
    parser.add_argument("--output", default="logs/compare")
    parser.add_argument("extra", nargs="*", help="more CLI flags for every run, after --, e.g. -- --trainer.max_epochs=5")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds={args.seeds!r} must be comma-separated integers, e.g. 0,1,2")
    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    try:
        compare(experiments, seeds, args.name, args.dataset, args.trainer_config, args.output, args.extra)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
