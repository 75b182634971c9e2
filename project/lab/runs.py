"""One run of a study: an ordinary ``project fit`` in its own log folder, its figures read back
from its summary.json and its logged curves, and a signal that stops the study recorded; and the
runner that trains a study's runs on this machine, one process per core."""

from __future__ import annotations

import contextlib
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

from project.lab.experiments import folder
from project.model.classifier import (
    BIAS,
    CLEAN_ACC,
    GAP,
    TEST_ACC,
    TRAINED_ACC,
    UNSEEN_ACC,
    UNUSED_ACC,
    VAL_ACC,
    VARIANCE,
    WEIGHT_NORM,
    ZERO_FRACTION,
)
from project.run.cli import ProjectCLI
from project.run.progress import quiet_lightning
from project.run.report import SUMMARY_FILE, read_summary
from project.run.stopping import RunInterrupted

# The signal that stopped the study (SIGINT or SIGTERM), or None.
stop_signal: int | None = None


def on_signal(signum, frame) -> None:
    global stop_signal
    if stop_signal is not None:  # the same signal again (sent to the group and forwarded): the first one stops
        return
    stop_signal = signum
    raise KeyboardInterrupt  # inside a fit, Lightning saves interrupted.ckpt and exits the run


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


def run_one(name: str, seed: int, vary: str, args: list[str], runs_dir: Path, key: str, label: str = "",
            isolated: bool = False) -> dict:
    """Train one experiment with one seed; its own output goes to stdout.txt in its log folder.

    ``isolated`` runs it as its own ``python -m project`` process: needed when the trainer starts
    processes of its own (DDP re-launches the command it was started with).
    """
    run_dir = runs_dir / folder(name) / f"seed_{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a half-finished earlier attempt is not half-counted
    run_dir.mkdir(parents=True)
    result: dict = {"experiment": name, "seed": seed, "vary": vary, "config_key": key}
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
    if stop_signal is not None or failure == "interrupted":
        result.update(status="interrupted", reason=f"stopped by signal {stop_signal or signal.SIGINT}")
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
    every = max(1, summary["epochs"] // len(val)) if val else 1  # epochs between validations (a study's runs: 3)
    weights = {key: weights.get(key, math.nan) for key in (CLEAN_ACC, VAL_ACC, GAP, BIAS, VARIANCE, WEIGHT_NORM,
                                                           ZERO_FRACTION)}
    # (nan where a data module of the user's own has no clean training subset, or without data.test_unused)
    unused = test.get(UNUSED_ACC, math.nan)
    # With data.test_unused the test measured every training sample (trained/acc); the epochs' clean
    # subset (data.clean_train_size) may be smaller, for the curve only. Bias and gaps follow the whole.
    train = test.get(TRAINED_ACC, weights[CLEAN_ACC])
    shift = train - weights[CLEAN_ACC]
    return {"train_acc": train, "val_acc": weights[VAL_ACC], "best_val_acc": max(val),
            "test_acc": test[TEST_ACC], "unused_acc": unused, "unseen_acc": test.get(UNSEEN_ACC, math.nan),
            "gap": weights[GAP] + shift, "unused_gap": train - unused, "bias": weights[BIAS] - shift,
            "variance": weights[VARIANCE] + shift,
            "weight_norm": weights[WEIGHT_NORM], "zero_fraction": weights[ZERO_FRACTION],
            "epochs_to_best": every * (1 + val.index(max(val))), "epochs": summary["epochs"], "val_every": every,
            "tested": summary["tested"],
            "effective_batch": (summary.get("batch") or {}).get("effective"),
            "val_acc_curve": val, "train_acc_curve": curves[CLEAN_ACC]}




def threads_per_job(jobs: int) -> int:
    """Each of ``jobs`` processes on this machine gets its share of the cores, one thread at least."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // jobs)


def worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    quiet_lightning(logging.WARNING)


def cached(runs_dir: Path, experiment: str, seed: int, key: str) -> dict | None:
    """The run's result.json where it finished before with the same configuration key."""
    done = runs_dir / folder(experiment) / f"seed_{seed}" / "result.json"
    previous = json.loads(done.read_text()) if done.exists() else None
    return previous if previous and previous["status"] == "ok" and previous.get("config_key") == key else None


def runner(runs_dir: Path, args_of, keys: dict, vary: str, jobs: int, echo, isolated: bool = False):
    """``run(pairs)``: trains the (experiment, seed) pairs not already finished with the same
    configuration on this machine, ``jobs`` at a time (``args_of(experiment, seed)`` their flags),
    reports each as it ends, and returns every result of the study so far by pair."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {}

    def run(pairs: list[tuple[str, int]], prefix: str = "") -> dict:
        todo = []
        for experiment, seed in pairs:
            previous = cached(runs_dir, experiment, seed, keys[experiment])
            if previous:
                results[(experiment, seed)] = previous
            elif (experiment, seed) not in results:
                todo.append((experiment, seed))
        experiments, seeds = dict.fromkeys(e for e, _ in pairs), dict.fromkeys(s for _, s in pairs)
        echo(f"{prefix}{len(pairs)} runs ({len(experiments)} experiments x {len(seeds)} seeds, vary {vary}), "
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
                 f"({result['wall_s']:.1f} s; {elapsed / 60:.1f} min, about {left / 60:.1f} min left)")

        previous_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if jobs == 1:
                for i, (experiment, seed) in enumerate(todo, 1):
                    label = f"[{i:>3}/{len(todo)}] {experiment} seed {seed}"
                    report(run_one(experiment, seed, vary, args_of(experiment, seed), runs_dir, keys[experiment], label,
                                   isolated))
                    if stop_signal is not None:
                        break
            else:
                _run_parallel(todo, jobs, vary, runs_dir, args_of, keys, report)
        except KeyboardInterrupt:
            pass
        finally:
            for s, handler in previous_handlers.items():
                signal.signal(s, handler)
        return dict(results)

    return run


def _run_parallel(todo, jobs, vary, runs_dir, args_of, keys, report) -> None:
    threads = threads_per_job(jobs)
    executor = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=worker_init,
                                   initargs=(threads,))
    try:
        pending = {executor.submit(run_one, e, s, vary, args_of(e, s),
                                   runs_dir, keys[e], f"[{i:>3}/{len(todo)}] {e} seed {s}") for i, (e, s) in enumerate(todo, 1)}
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
