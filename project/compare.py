"""The lab: run experiments over several seeds and report what each technique did, with its noise.

    python -m project.compare --experiments baseline,dropout,l2 --seeds 0,1,2,3,4 --name my_study

Each run is an ordinary ``project fit`` with ``configs/experiment/baseline.yaml`` and the
experiment's own file, logged under ``logs/compare/<name>/runs/<experiment>/seed_<seed>/`` so that
one TensorBoard overlays them all. A seed varies the initialization, the training subset and split,
and the augmentation stream together (``--vary both``), so the spread over seeds is the spread a
user would see. A finished run leaves ``result.json`` with the key of its fully resolved
configuration; a rerun skips it only while that key is unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from lightning.pytorch import Callback

from project.checks import MAX_SEED, check_folder_name, check_output
from project.cli import CONFIG_DIR, ProjectCLI, RunInterrupted
from project.compare_report import write_report, write_tables
from project.compare_stats import summarize
from project.errors import ArgumentParser, SettingError, choice, fail, from_line, is_integer, stop
from project.hparams import flatten_settings
from project.model import BIAS, CLEAN_ACC, GAP, TEST_ACC, VAL_ACC, VARIANCE, WEIGHT_NORM, ZERO_FRACTION
from project.progress import quiet_lightning
from project.report import SUMMARY_FILE, read_summary

EXPERIMENT_DIR = CONFIG_DIR / "experiment"
TECHNIQUES = ["baseline", "l1", "l2", "weight_decay", "dropout", "batchnorm", "augment", "early_stopping",
              "label_smoothing", "all"]
VARY = ("both", "data", "init")


class StudyInterrupted(Exception):
    """SIGINT or SIGTERM: the study stops at once."""


_stop_signal: int | None = None


def _on_signal(signum, frame) -> None:
    global _stop_signal
    _stop_signal = signum
    raise KeyboardInterrupt  # inside a fit, Lightning saves interrupted.ckpt and exits the run


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def experiment_args(name: str) -> list[str]:
    """The config files of one experiment: the baseline, then its own overrides."""
    files = [EXPERIMENT_DIR / "baseline.yaml"] + ([EXPERIMENT_DIR / f"{name}.yaml"] if name != "baseline" else [])
    return [arg for f in files for arg in ("--config", str(f))]


def seed_args(seed: int, vary: str, data_seed: bool = True) -> list[str]:
    """``both``: the seed sets the initialization and the data (split, training subset, augmentation
    stream); ``init`` or ``data``: only that one, the other stays at seed 0. A data module of the
    user's own without a ``seed`` setting (``data_seed`` false) gets the initialization's seed only."""
    return [f"--seed_everything={seed if vary in ('both', 'init') else 0}",
            *([f"--data.seed={seed if vary in ('both', 'data') else 0}"] if data_seed else [])]


def run_args(name: str, seed: int, vary: str, runs_dir: Path, extra: list[str], data_seed: bool = True) -> list[str]:
    return ["fit", *experiment_args(name), *extra, *seed_args(seed, vary, data_seed),
            f"--trainer.logger.init_args.save_dir={runs_dir}", f"--trainer.logger.init_args.name={name}",
            f"--trainer.logger.init_args.version=seed_{seed}", "--trainer.enable_model_summary=false",
            "--trainer.enable_progress_bar=false"]


def check_configs(names: list[str], extra: list[str], vary: str,
                  read_data: bool = True) -> tuple[dict[str, str], list[str], dict[str, bool]]:
    """Parse every experiment's config before any run starts, so a typo costs seconds, not a study.

    Returns each experiment's configuration key, a hash of its fully resolved configuration (every
    config file and flag applied, every default filled in), so a changed file or flag re-runs it;
    the data sets the experiments use; and whether each one's data module takes a seed. With
    ``read_data`` each experiment's data is read too, so a size that does not fit stops here.
    """
    unknown = sorted(set(names) - set(available_experiments()))
    if unknown:
        fail("--experiments", unknown[0], ", ".join(available_experiments()),
             "is not an experiment of configs/experiment/")
    keys, datasets, seeded = {}, set(), {}
    for name in names:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                cli = ProjectCLI(args=run_args(name, 0, vary, Path("unused"), extra, data_seed=False)[1:],
                                 run=False)  # parse, no fit
        except SystemExit:
            error = from_line(stderr.getvalue().strip().splitlines()[-1])
            raise SettingError(error.setting, f"{error.value} in experiment {name}", error.allowed) from None
        if read_data and hasattr(cli.datamodule, "train_batches"):  # a data set that does not fit stops here
            try:
                cli.datamodule.setup()
            except SettingError as err:
                raise SettingError(err.setting, err.value, err.allowed, f"{err.why} in experiment {name}") from None
        resolved = cli.parser.dump(cli.config, skip_none=False, skip_check=True)
        keys[name] = hashlib.sha256(f"{resolved}\nvary={vary}".encode()).hexdigest()[:16]
        datasets.add(getattr(cli.datamodule, "hparams", {}).get("dataset") or type(cli.datamodule).__name__)
        seeded[name] = "seed" in inspect.signature(type(cli.datamodule)).parameters
        if vary == "data" and not seeded[name]:
            fail("--vary", vary, "both or init", f"needs a data.seed setting, which {type(cli.datamodule).__name__} "
                 f"(experiment {name}) does not have")
    return keys, sorted(datasets), seeded


class StudyProgress(Callback):
    """One line per finished epoch of a study's run, on the study's own output."""

    def __init__(self, label: str, out=None):
        self.label, self.out = label, out or sys.__stdout__

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        shown = "  ".join(f"{name} {float(m[tag]):+.3f}" if name == "gap" else f"{name} {float(m[tag]):.3f}"
                          for name, tag in (("train(clean)", CLEAN_ACC), ("val", VAL_ACC), ("gap", GAP))
                          if tag in m)
        print(f"{self.label}  epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {shown}", file=self.out, flush=True)


def run_one(name: str, seed: int, vary: str, runs_dir: Path, extra: list[str], key: str, label: str = "",
            isolated: bool = False, data_seed: bool = True) -> dict:
    """Train one experiment with one seed; its own output goes to stdout.txt in its log folder.

    ``isolated`` runs it as its own ``python -m project`` process: needed when the trainer starts
    processes of its own (DDP re-launches the command it was started with).
    """
    run_dir = runs_dir / name / f"seed_{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a half-finished earlier attempt is not half-counted
    run_dir.mkdir(parents=True)
    result: dict = {"experiment": name, "seed": seed, "vary": vary, "config_key": key}
    args = run_args(name, seed, vary, runs_dir, extra, data_seed)
    started = time.perf_counter()
    failure = None
    with open(run_dir / "stdout.txt", "w") as out:
        if isolated:
            done = subprocess.run([sys.executable, "-m", "project", *args], stdout=out, stderr=subprocess.STDOUT)
            failure = f"exit {done.returncode}" if done.returncode else None
        else:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    ProjectCLI(args=args, trainer_defaults={"callbacks": [StudyProgress(label)]})
                except SystemExit as err:
                    failure = None if err.code in (0, None) else f"exit {err.code}"
                except (KeyboardInterrupt, RunInterrupted):
                    failure = "interrupted"
                except Exception as err:  # a failed run is reported, and the study goes on
                    failure = f"{type(err).__name__}: {err}"
    if failure and failure.startswith("exit "):  # the run's own last error line, now that its file is closed
        failure = f"{failure}: {_last_line(run_dir / 'stdout.txt')}"
    result["wall_s"] = time.perf_counter() - started
    if _stop_signal is not None or failure == "interrupted":
        result.update(status="interrupted", reason=f"stopped by signal {_stop_signal or signal.SIGINT}")
    elif failure or not (run_dir / SUMMARY_FILE).exists():
        result.update(status="failed", reason=(failure or f"no {SUMMARY_FILE} written").splitlines()[0][:300])
    else:
        result.update(status="ok", reason="", **_figures(run_dir))
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or line.startswith("error:")]
    return (errors or lines or ["failed with no output"])[-1]


def _figures(run_dir: Path) -> dict:
    """The run's table figures: its summary.json (the tested weights' own figures) and its logged curves."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = read_summary(run_dir)
    weights, test = summary["tested_weights"], summary["test"]
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    logged = events.Tags()["scalars"]
    curves = {tag: [e.value for e in events.Scalars(tag)] if tag in logged else [] for tag in (CLEAN_ACC, VAL_ACC)}
    val = curves[VAL_ACC]
    weights = {key: weights.get(key, math.nan) for key in (CLEAN_ACC, GAP, BIAS, VARIANCE, WEIGHT_NORM, ZERO_FRACTION)}
    # (nan where a data module of the user's own has no clean training subset)
    return {"train_acc": weights[CLEAN_ACC], "best_val_acc": max(val), "test_acc": test[TEST_ACC],
            "gap": weights[GAP], "bias": weights[BIAS], "variance": weights[VARIANCE],
            "weight_norm": weights[WEIGHT_NORM], "zero_fraction": weights[ZERO_FRACTION],
            "epochs_to_best": 1 + val.index(max(val)), "epochs": len(val), "tested": summary["tested"],
            "val_acc_curve": val, "train_acc_curve": curves[CLEAN_ACC]}


# --- the study -----------------------------------------------------------------------------------


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    quiet_lightning(logging.WARNING)


def default_jobs() -> int:
    """One process per core: measured 1.8x faster than one process using both cores on the lab's
    small networks (2-core CPU, README's lab section)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def compare(experiments: list[str], seeds: list[int], name: str = "default", dataset: str | None = None,
            trainer_config: str | None = None, output: str = "logs/compare", extra: list[str] | None = None,
            vary: str = "both", jobs: int = 1, echo=print) -> tuple[list[dict], list[dict]]:
    """Run every (experiment, seed) not already finished with this configuration, then write the
    tables and the report. Returns the rows and every run's result."""
    extra = list(extra or [])
    if dataset:
        extra.append(f"--data.dataset={dataset}")
    if trainer_config:
        if not Path(trainer_config).is_file():
            fail("--trainer-config", trainer_config, "a YAML file such as configs/trainer/ddp.yaml", "is not a file")
        extra = ["--config", trainer_config, *extra]
        jobs = 1  # its runs are processes of their own, possibly several each
    check_study(experiments, seeds, name, output, vary, jobs)
    unknown = sorted(set(experiments) - set(available_experiments()))
    if unknown:
        fail("--experiments", unknown[0], ", ".join(available_experiments()),
             "is not an experiment of configs/experiment/")
    quiet_lightning(logging.WARNING)  # each run's own output goes to its stdout.txt
    # Every run ticks what the study varies in TensorBoard's hparams tab.
    extra.append(f"--hparams.varied=[{', '.join(varied_settings(experiments, vary))}]")
    keys, datasets, seeded = check_configs(experiments, extra, vary)
    return _compare(experiments, seeds, name, output, extra, vary, jobs, echo, keys, datasets, seeded,
                    isolated=trainer_config is not None)


def check_study(experiments: list[str], seeds: list[int], name: str, output: str, vary: str, jobs: int) -> None:
    """The study's own settings, before any folder is made or any run starts."""
    if not experiments:
        fail("--experiments", ",".join(experiments), "comma-separated names from configs/experiment/, e.g. "
             "baseline,dropout")
    if not seeds:
        fail("--seeds", "", "comma-separated seeds, e.g. 0,1,2,3,4")
    for seed in seeds:
        if not (is_integer(seed) and 0 <= seed <= MAX_SEED):
            fail("--seeds", seed, f"integers in [0, {MAX_SEED}]")
    if len(set(seeds)) < len(seeds):
        fail("--seeds", ",".join(map(str, seeds)), "each seed once", "repeats a seed")
    choice(dict.fromkeys(VARY), "--vary", vary)
    if not (is_integer(jobs) and jobs >= 1):
        fail("--jobs", jobs, "an integer >= 1")
    check_folder_name("--name", name)
    check_output("--output", Path(output))


def varied_settings(experiments: list[str], vary: str) -> list[str]:
    """The hparams keys the study varies: each experiment's own settings, and the seed."""
    import yaml

    keys = {"data/seed"} if vary in ("both", "data") else set()
    for name in experiments:
        if name != "baseline":
            content = yaml.safe_load((EXPERIMENT_DIR / f"{name}.yaml").read_text()) or {}
            keys |= set(flatten_settings({k: v for k, v in content.items() if k in ("model", "data", "penalty")}))
    return sorted(keys)


def _compare(experiments, seeds, name, output, extra, vary, jobs, echo, keys, datasets, seeded, isolated):
    out_dir = Path(output) / name
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo, results = [], {}
    pairs = [(e, s) for e in experiments for s in seeds]
    for experiment, seed in pairs:
        done = runs_dir / experiment / f"seed_{seed}" / "result.json"
        previous = json.loads(done.read_text()) if done.exists() else None
        if previous and previous["status"] == "ok" and previous.get("config_key") == keys[experiment]:
            results[(experiment, seed)] = previous
        else:
            todo.append((experiment, seed))
    echo(f"study {name}: {len(pairs)} runs ({len(experiments)} experiments x {len(seeds)} seeds, vary {vary}), "
         f"{len(pairs) - len(todo)} done before with the same configuration, {len(todo)} to run, {jobs} at a time")
    started, finished = time.perf_counter(), 0

    def report(result: dict) -> None:
        nonlocal finished
        finished += 1
        results[(result["experiment"], result["seed"])] = result
        elapsed = time.perf_counter() - started
        left = elapsed / finished * (len(todo) - finished)
        summary = (f"test acc {result['test_acc']:.3f}  gap {result['gap']:+.3f}" if result["status"] == "ok"
                   else f"{result['status'].upper()}: {result['reason']}")
        echo(f"[{finished:>3}/{len(todo)}] {result['experiment']} seed {result['seed']}: {summary}  "
             f"({result['wall_s']:.1f} s; study {elapsed / 60:.1f} min, about {left / 60:.1f} min left)")

    previous_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if jobs == 1:
            for i, (experiment, seed) in enumerate(todo, 1):
                label = f"[{i:>3}/{len(todo)}] {experiment} seed {seed}"
                report(run_one(experiment, seed, vary, runs_dir, extra, keys[experiment], label, isolated,
                               seeded[experiment]))
                if _stop_signal is not None:
                    break
        else:
            _run_parallel(todo, jobs, vary, runs_dir, extra, keys, seeded, report)
    except KeyboardInterrupt:
        pass
    finally:
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    ordered = [results[p] for p in pairs if p in results]
    rows = summarize(ordered, experiments)
    title = f"make compare: {name}, {len(seeds)} seeds (vary {vary}), data set {', '.join(datasets)}"
    write_tables(rows, out_dir, seeds, vary)
    write_report(rows, ordered, out_dir, title)
    echo(f"\n{(out_dir / 'results.md').read_text()}\nwritten to {out_dir}/ (results.csv, results.md, report.png); "
         f"tensorboard --logdir {runs_dir}")
    if _stop_signal is not None:
        raise StudyInterrupted(f"stopped by signal {_stop_signal}; rerun the same command to finish the study")
    return rows, ordered


def _run_parallel(todo, jobs, vary, runs_dir, extra, keys, seeded, report) -> None:
    threads = max(1, default_jobs() // jobs)
    executor = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                   initargs=(threads,))
    try:
        pending = {executor.submit(run_one, e, s, vary, runs_dir, extra, keys[e], f"[{i:>3}/{len(todo)}] {e} seed {s}",
                                   False, seeded[e]) for i, (e, s) in enumerate(todo, 1)}
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                report(future.result())
    except KeyboardInterrupt:
        for process in list(executor._processes.values()):  # each records its run as interrupted
            process.terminate()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m project.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default=",".join(TECHNIQUES),
                        help=f"comma-separated names from configs/experiment/ (default: {','.join(TECHNIQUES)})")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default: 0,1,2,3,4)")
    parser.add_argument("--vary", default="both", choices=VARY,
                        help="what a seed changes: both (default), data (split, subset, augmentation) or init")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="runs at a time, each in its own process (default: one per core, measured fastest)")
    parser.add_argument("--name", default="default", help="the study's folder under --output")
    parser.add_argument("--dataset", default=None, help="override data.dataset for every run (digits, mnist5k ...)")
    parser.add_argument("--trainer-config", default=None, help="a trainer config, e.g. configs/trainer/ddp.yaml")
    parser.add_argument("--output", default="logs/compare")
    parser.add_argument("extra", nargs="*", help="more CLI flags for every run, after --, e.g. -- --trainer.max_epochs=5")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        stop(SettingError("--seeds", args.seeds, "comma-separated integers, e.g. 0,1,2"))
    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    try:
        rows, results = compare(experiments, seeds, args.name, args.dataset, args.trainer_config, args.output,
                                args.extra, args.vary, args.jobs)
    except SettingError as err:
        stop(err)
    except OSError as err:  # a disk that fills, a folder that became unwritable mid-study
        stop(SettingError("--output", args.output, "a folder with free space this user can write",
                          f"failed: {err.strerror or err}"), code=1)
    except StudyInterrupted as err:
        stop(err, code=128 + (_stop_signal or signal.SIGINT))
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        print(f"error: {len(failed)} of {len(results)} runs failed (see the table); the rest are in the results",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
