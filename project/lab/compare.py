"""The lab: run experiments over several seeds and report what each technique did, with its noise.

    python -m project.lab --experiments baseline,dropout,l2 --seeds 0,1,2,3,4 --name my_study

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
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from project.errors import ArgumentParser, SettingError, choice, fail, from_line, is_integer, stop
from project.lab import runs
from project.lab.curve import write_curve
from project.lab.report import write_report, write_tables
from project.lab.stats import summarize
from project.run.checks import MAX_SEED, check_folder_name, check_output
from project.run.cli import CONFIG_DIR, ProjectCLI
from project.run.hparams import flatten_settings, write_study_views
from project.run.progress import quiet_lightning

EXPERIMENT_DIR = CONFIG_DIR / "experiment"
TECHNIQUES = ["baseline", "l1", "l2", "weight_decay", "dropout", "batchnorm", "augment", "early_stopping",
              "label_smoothing", "all"]
VARY = ("both", "data", "init")


class StudyInterrupted(Exception):
    """SIGINT or SIGTERM: the study stops at once."""


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def experiment_args(name: str) -> list[str]:
    """The config files of one experiment: the baseline, then its own overrides. A point of a
    sweep, ``<setting>=<value>``, is the baseline with that one setting changed."""
    if "=" in name:
        setting, _, value = name.partition("=")
        return ["--config", str(EXPERIMENT_DIR / "baseline.yaml"), f"--{setting}={value}"]
    files = [EXPERIMENT_DIR / "baseline.yaml"] + ([EXPERIMENT_DIR / f"{name}.yaml"] if name != "baseline" else [])
    return [arg for f in files for arg in ("--config", str(f))]


def sweep_points(sweep: str) -> list[str]:
    """``data.train_size=100,200,500`` as the experiments ``data.train_size=100`` ... (one line if malformed)."""
    setting, _, values = sweep.partition("=")
    points = [v.strip() for v in values.split(",") if v.strip()]
    if not setting.strip() or not points or setting.startswith("-"):
        fail("--sweep", sweep, "<setting>=<value>,<value>,..., e.g. data.train_size=100,200,500,1000,3500")
    if len(set(points)) < len(points):
        fail("--sweep", sweep, "each value once", "repeats a value")
    return [f"{setting.strip()}={v}" for v in points]


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


# --- the study -----------------------------------------------------------------------------------


def default_jobs() -> int:
    """One process per core: measured 1.8x faster than one process using both cores on the lab's
    small networks (2-core CPU, README's lab section)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def compare(experiments: list[str], seeds: list[int], name: str = "default", dataset: str | None = None,
            trainer_config: str | None = None, output: str = "logs/compare", extra: list[str] | None = None,
            vary: str = "both", jobs: int = 1, echo=print, replicate: bool = False,
            sweep: str | None = None) -> tuple[list[dict], list[dict]]:
    """Run every (experiment, seed) not already finished with this configuration, then write the
    tables and the report. Returns the rows and every run's result.

    ``replicate`` also runs the seeds that follow ``seeds`` (as many, disjoint) and reports which
    marks replicated; ``sweep`` (``setting=v1,v2,...``) runs the baseline at each value and draws the
    learning curve over them."""
    extra = list(extra or [])
    if sweep is not None:
        experiments = sweep_points(sweep)
    if dataset:
        extra.append(f"--data.dataset={dataset}")
    if trainer_config:
        if not Path(trainer_config).is_file():
            fail("--trainer-config", trainer_config, "a YAML file such as configs/trainer/ddp.yaml", "is not a file")
        extra = ["--config", trainer_config, *extra]
        jobs = 1  # its runs are processes of their own, possibly several each
    check_study(experiments, seeds, name, output, vary, jobs)
    second = [max(seeds) + 1 + i for i in range(len(seeds))] if replicate else []
    if second and second[-1] > MAX_SEED:
        fail("--seeds", ",".join(map(str, seeds)), f"seeds whose replicate set (the next {len(seeds)}) stays <= {MAX_SEED}")
    unknown = sorted(set(e for e in experiments if "=" not in e) - set(available_experiments()))
    if unknown:
        fail("--experiments", unknown[0], ", ".join(available_experiments()),
             "is not an experiment of configs/experiment/")
    quiet_lightning(logging.WARNING)  # each run's own output goes to its stdout.txt
    # Every run ticks what the study varies in TensorBoard's hparams tab.
    extra.append("--hparams.layout=false")  # the study draws one chart per experiment instead (write_study_views)
    extra.append(f"--hparams.varied=[{', '.join(varied_settings(experiments, vary))}]")
    keys, datasets, seeded = check_configs(experiments, extra, vary)
    return _compare(experiments, seeds, name, output, extra, vary, jobs, echo, keys, datasets, seeded,
                    isolated=trainer_config is not None, second=second, sweep=sweep)


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
        if "=" in name:  # a sweep's setting, as the hparams tab names it
            keys.add(name.partition("=")[0].replace(".init_args", "").replace(".", "/"))
        elif name != "baseline":
            content = yaml.safe_load((EXPERIMENT_DIR / f"{name}.yaml").read_text()) or {}
            keys |= set(flatten_settings({k: v for k, v in content.items() if k in ("model", "data", "penalty")}))
    return sorted(keys)


def _compare(experiments, seeds, name, output, extra, vary, jobs, echo, keys, datasets, seeded, isolated, second,
             sweep):
    out_dir = Path(output) / name
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo, results = [], {}
    pairs = [(e, s) for e in experiments for s in [*seeds, *second]]
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

    previous_handlers = {s: signal.signal(s, runs.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if jobs == 1:
            for i, (experiment, seed) in enumerate(todo, 1):
                label = f"[{i:>3}/{len(todo)}] {experiment} seed {seed}"
                args = run_args(experiment, seed, vary, runs_dir, extra, seeded[experiment])
                report(runs.run_one(experiment, seed, vary, args, runs_dir, keys[experiment], label, isolated))
                if runs.stop_signal is not None:
                    break
        else:
            _run_parallel(todo, jobs, vary, runs_dir, extra, keys, seeded, report)
    except KeyboardInterrupt:
        pass
    finally:
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    batches = {r.get("effective_batch") for r in results.values() if r["status"] == "ok"}
    if len(batches) > 1:  # a process count or a batch setting differs: steps are not comparable
        by = {e: sorted({r.get("effective_batch") for (x, _), r in results.items() if x == e and r["status"] == "ok"},
                        key=str) for e in experiments}
        echo("note: the runs of this study used different effective batches (per-process batch x processes x "
             f"accumulation): {'; '.join(f'{e} {v}' for e, v in by.items() if v)}; data.batch_size_total keeps one")
    ordered = [results[p] for p in pairs if p in results and p[1] in seeds]
    rows = summarize(ordered, experiments)
    title = f"make compare: {name}, {len(seeds)} seeds (vary {vary}), data set {', '.join(datasets)}"
    replicated = [results[p] for p in pairs if p in results and p[1] in second]
    write_tables(rows, out_dir, seeds, vary, summarize(replicated, experiments) if second else None, second)
    write_report(rows, ordered, out_dir, title)
    written = ["results.csv", "results.md", "report.png"] + (["results_replicate.csv", "conclusions.md"] if second else [])
    if sweep:
        write_curve(sweep, rows, ordered, out_dir, title)
        written += ["curve.md", "curve.png"]
    means = write_study_views(out_dir, ordered + replicated)
    echo(f"\n{(out_dir / 'results.md').read_text()}" + (f"\n{(out_dir / 'curve.md').read_text()}" if sweep else "")
         + f"\nwritten to {out_dir}/ ({', '.join(written)}); every run: tensorboard --logdir {runs_dir}; "
         f"one chart per experiment: tensorboard --logdir {means}")
    ordered += replicated
    if runs.stop_signal is not None:
        raise StudyInterrupted(f"stopped by signal {runs.stop_signal}; rerun the same command to finish the study")
    return rows, ordered


def _run_parallel(todo, jobs, vary, runs_dir, extra, keys, seeded, report) -> None:
    threads = max(1, default_jobs() // jobs)
    executor = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=runs.worker_init,
                                   initargs=(threads,))
    try:
        pending = {executor.submit(runs.run_one, e, s, vary, run_args(e, s, vary, runs_dir, extra, seeded[e]),
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


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m project.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default=None,
                        help=f"comma-separated names from configs/experiment/ (default: {','.join(TECHNIQUES)})")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default: 0,1,2,3,4)")
    parser.add_argument("--vary", default="both", choices=VARY,
                        help="what a seed changes: both (default), data (split, subset, augmentation) or init")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="runs at a time, each in its own process (default: one per core, measured fastest)")
    parser.add_argument("--name", default="default", help="the study's folder under --output")
    parser.add_argument("--dataset", default=None, help="override data.dataset for every run (digits, mnist5k ...)")
    parser.add_argument("--trainer-config", default=None, help="a trainer config, e.g. configs/trainer/ddp.yaml")
    parser.add_argument("--replicate", action="store_true",
                        help="also run as many further seeds (disjoint) and report which marks replicated")
    parser.add_argument("--sweep", default=None, help="a learning curve: the baseline at each value of one setting, "
                        "e.g. data.train_size=100,200,500,1000,3500 (replaces --experiments)")
    parser.add_argument("--output", default="logs/compare")
    parser.add_argument("extra", nargs="*", help="more CLI flags for every run, after --, e.g. -- --trainer.max_epochs=5")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        stop(SettingError("--seeds", args.seeds, "comma-separated integers, e.g. 0,1,2"))
    if args.sweep is not None and args.experiments is not None:
        stop(SettingError("--experiments", args.experiments, "either --experiments or --sweep",
                          f"cannot go with --sweep={args.sweep} (a sweep's experiments are its points)"))
    experiments = [e.strip() for e in (args.experiments if args.experiments is not None else ",".join(TECHNIQUES))
                   .split(",") if e.strip()]
    try:
        rows, results = compare(experiments, seeds, args.name, args.dataset, args.trainer_config, args.output,
                                args.extra, args.vary, args.jobs, replicate=args.replicate, sweep=args.sweep)
    except SettingError as err:
        stop(err)
    except OSError as err:  # a disk that fills, a folder that became unwritable mid-study
        stop(SettingError("--output", args.output, "a folder with free space this user can write",
                          f"failed: {err.strerror or err}"), code=1)
    except StudyInterrupted as err:
        stop(err, code=128 + (runs.stop_signal or signal.SIGINT))
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        print(f"error: {len(failed)} of {len(results)} runs failed (see the table); the rest are in the results",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
