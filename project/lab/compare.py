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

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from project.errors import ArgumentParser, SettingError, choice, fail, is_integer, stop
from project.lab import claims as claims_file
from project.lab import runs
from project.lab.configs import RunArgs, check_configs, describe, varied_settings
from project.lab.decide import MARGIN, Plan, decide, experiments_of
from project.lab.experiments import DEFAULT, Baseline, check_config_file, placed, resolve
from project.lab.experiments import check as check_experiment
from project.lab.report import write_study
from project.lab.shared import HEARTBEAT, report_from_storage, run_workers
from project.run.checks import MAX_SEED
from project.run.paths import check_folder_name, check_output
from project.run.progress import quiet_lightning
from project.storage import StorageError, check_storage, masked

TECHNIQUES = ["baseline", "l1", "l2", "weight_decay", "dropout", "batchnorm", "augment", "early_stopping",
              "label_smoothing", "all"]
VARY = ("both", "data", "init")


class StudyInterrupted(Exception):
    """SIGINT or SIGTERM: the study stops at once."""


def importable(folder: Path) -> None:
    """Modules beside a claims file (a network of the user's own) import in every run, here, in the
    worker processes (spawned: they get this path) and in runs of their own (the environment)."""
    folder = str(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if folder not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])


def sweep_points(sweep: str) -> list[str]:
    """``data.train_size=100,200,500`` as the experiments ``data.train_size=100`` ... (one line if malformed)."""
    setting, _, values = sweep.partition("=")
    points = [v.strip() for v in values.split(",") if v.strip()]
    if not setting.strip() or not points or setting.startswith("-"):
        fail("--sweep", sweep, "<setting>=<value>,<value>,..., e.g. data.train_size=100,200,500,1000,3500")
    if len(set(points)) < len(points):
        fail("--sweep", sweep, "each value once", "repeats a value")
    return [f"{setting.strip()}={v}" for v in points]


# --- the study -----------------------------------------------------------------------------------


def default_jobs() -> int:
    """One process per core: measured 1.8x faster than one process using both cores on the lab's
    small networks (2-core CPU, README's lab section)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def compare(experiments: list[str] | None, seeds: list[int], name: str = "default", dataset: str | None = None,
            trainer_config: str | None = None, output: str = "logs/compare", extra: list[str] | None = None,
            vary: str = "both", jobs: int = 1, echo=print, replicate: bool = False,
            sweep: str | None = None, until_decided: bool = False, claims: str | None = None,
            max_seeds: int = 12, round_size: int | None = None, margin: float = MARGIN,
            command: str = "make compare DECIDE=1", storage: str | None = None,
            heartbeat: int = HEARTBEAT, baseline: str | None = None, error: str = "fdr") -> tuple[list[dict], list[dict]]:
    """Run every (experiment, seed) not already finished with this configuration, then write the
    tables and the report. Returns the rows and every run's result.

    ``replicate`` also runs the seeds that follow ``seeds`` (as many, disjoint) and reports which
    marks replicated; ``sweep`` (``setting=v1,v2,...``) runs the baseline at each value and draws the
    learning curve over them. ``until_decided`` answers the claims of ``claims`` (a YAML file,
    default configs/lab/lecture.yaml), adding seeds in rounds of ``round_size`` up to ``max_seeds``
    until each is decided (project.lab.decide); ``experiments``, when given, keeps the claims about
    those experiments. ``baseline`` (a config file) replaces configs/experiment/baseline.yaml, as a
    claims file's own ``baseline:`` does. ``storage`` (a database URL) makes this process one worker
    of a study shared by every process started with the same name and storage (project.lab.shared)."""
    extra = list(extra or [])
    flags = list(extra)  # the user's own, for the page
    base, root, decide_plan, tuning = DEFAULT, Path.cwd(), None, None
    if baseline is not None:
        path = resolve(baseline, root)
        check_config_file("--baseline", path, baseline)
        base = Baseline(files=(str(path.resolve()),), source=baseline, flags=placed(path, yaml.safe_load(path.read_text())))
        importable(path.resolve().parent)
    if until_decided:
        if sweep is not None or replicate:
            fail("--until-decided", "on", "a study without --sweep or --replicate (it chooses its seeds itself)")
        file = claims_file.load(claims or claims_file.CLAIMS_FILE)
        if file.baseline is not None and baseline is not None:
            fail("--baseline", baseline, "either --baseline or a claims file without a baseline: of its own",
                 f"cannot go with {claims}, whose baseline is {file.baseline.source}")
        base, root, tuning = file.baseline or base, file.root, file.tune
        importable(root)
        chosen = file.claims
        if experiments is not None:
            chosen = [c for c in chosen if c.experiment in experiments]
            if not chosen:
                fail("--experiments", ",".join(experiments), "experiments some claim of "
                     f"{claims or claims_file.CLAIMS_FILE} is about")
        plan = Plan(tuple(seeds), len(seeds) if round_size is None else round_size, max_seeds, float(margin), error=error)
        check_study(experiments_of(chosen, tuning), seeds, name, output, vary, jobs)
        plan.check(chosen)
        experiments, decide_plan = experiments_of(chosen, tuning), (chosen, plan, command)
    if experiments is None:
        experiments = list(TECHNIQUES)
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
    if decide_plan is None:
        for experiment in experiments:
            check_experiment(experiment, "--experiments", root)
    quiet_lightning(logging.WARNING)  # each run's own output goes to its stdout.txt
    # Every run ticks what the study varies in TensorBoard's hparams tab.
    extra.append("--hparams.layout=false")  # the study draws one chart per experiment instead (write_study_views)
    extra.append(f"--hparams.varied=[{', '.join(varied_settings(experiments, vary, root))}]")
    if storage is not None:
        check_storage(storage)  # the driver there and the database answering, before any folder
    parsed = check_configs(experiments, extra, vary, baseline=base, root=root)
    study = {"experiments": experiments, "seeds": seeds, "second": second, "vary": vary, "sweep": sweep,
             "keys": parsed.keys, "datasets": parsed.datasets,
             "baseline": describe(base, parsed.baseline),
             "claims": [vars(c) for c in decide_plan[0]] if decide_plan else None,
             "plan": vars(decide_plan[1]) | {"first": seeds} if decide_plan else None,
             "tune": vars(tuning) | {"values": list(tuning.values)} if decide_plan and tuning else None, "command": command,
             "flags": flags}
    study = json.loads(json.dumps(study))  # as the storage keeps it: every worker compares the same thing
    out_dir = Path(output) / name

    args_of = RunArgs(vary, out_dir / "runs", extra, parsed.seeded, base, root, parsed.tests_best, parsed.val_every)

    started = time.perf_counter()
    if storage is not None:
        results = run_workers(study, name, storage, out_dir, args_of, echo, trainer_config is not None, heartbeat, jobs)
    else:
        run = runs.runner(out_dir / "runs", args_of, parsed.keys, vary, jobs, echo, isolated=trainer_config is not None)
        if decide_plan is not None:
            echo(f"study {name}: {len(decide_plan[0])} claims of {len(experiments)} experiments, seeds until decided")
            results = decide(decide_plan[0], decide_plan[1], run, echo, stopped=lambda: runs.stop_signal is not None,
                             tuning=tuning)[1]
        else:
            results = run([(e, s) for e in experiments for s in [*seeds, *second]], prefix=f"study {name}: ")
    if runs.stop_signal is not None and storage is not None:
        raise StudyInterrupted(f"stopped by signal {runs.stop_signal}; its run is queued again in {masked(storage)} "
                               "for any worker; rerun the same command to join the study again")
    if runs.stop_signal is not None and decide_plan is not None:
        raise StudyInterrupted(f"stopped by signal {runs.stop_signal}; rerun the same command to finish the study")
    rows, ordered = write_study(study, results, out_dir, echo, (time.perf_counter() - started) / 60)
    if runs.stop_signal is not None:
        raise StudyInterrupted(f"stopped by signal {runs.stop_signal}; rerun the same command to finish the study")
    return rows, ordered


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


def command_line(args) -> str:
    """The command that regenerates a decided study, as conclusions.json records it."""
    flags = [f"--seeds {args.seeds}"]
    if args.until_decided:
        flags = ["--until-decided", *flags, f"--max-seeds {args.max_seeds}", f"--margin {args.margin:g}"] + \
            ([f"--error {args.error}"] if args.error != "fdr" else [])
    flags += [f"--{k} {v}" for k, v in (("round", args.round), ("claims", args.claims), ("experiments", args.experiments),
                                         ("baseline", args.baseline), ("dataset", args.dataset)) if v is not None]
    return " ".join(["python -m project.lab", *flags, *(["--", *args.extra] if args.extra else [])])


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m project.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default=None,
                        help=f"comma-separated names from configs/experiment/, settings (model.net.init_args.width=0.5), "
                        f"config files, or several joined by + (default: {','.join(TECHNIQUES)})")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0,1,2,3,4; with "
                        "--until-decided the first round, default 0,1,2)")
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
    parser.add_argument("--until-decided", action="store_true",
                        help="answer the claims of --claims: --seeds first, then rounds of more seeds for the claims "
                        "still undecided, up to --max-seeds (make compare DECIDE=1)")
    parser.add_argument("--claims", default=None, help="the claims' YAML file (default: configs/lab/lecture.yaml); "
                        "its experiments, baseline and files are relative to it")
    parser.add_argument("--baseline", default=None, help="a config file that replaces configs/experiment/baseline.yaml "
                        "as the baseline every experiment is applied on (a claims file may name its own instead)")
    parser.add_argument("--max-seeds", type=int, default=12, help="--until-decided: seeds a claim gets at most (default 12)")
    parser.add_argument("--round", type=int, default=None,
                        help="--until-decided: seeds added a look (default: as many as --seeds)")
    parser.add_argument("--margin", type=float, default=MARGIN,
                        help=f"--until-decided: no effect means the interval lies inside ±margin (default {MARGIN:g})")
    parser.add_argument("--error", default="fdr", help="--until-decided: what the 5%% bounds: fdr (default), the "
                        "page's false discovery rate (the expected share of false verdicts), or fwer, the chance of any "
                        "false verdict on the page (fewer claims decided)")
    parser.add_argument("--storage", default=None, help="a database URL (postgresql://user:password@host/db): this "
                        "process joins the study of that --name there as one worker; start as many as you like")
    parser.add_argument("--heartbeat", type=int, default=HEARTBEAT, help="with --storage: seconds between a running "
                        f"run's heartbeats; a run silent for twice that is queued again (default {HEARTBEAT})")
    parser.add_argument("--report", action="store_true", help="with --storage: write a shared study's report from the "
                        "storage alone (make compare-report)")
    parser.add_argument("--output", default="logs/compare")
    parser.add_argument("extra", nargs="*", help="more CLI flags for every run, after --, e.g. -- --trainer.max_epochs=5")
    args = parser.parse_args(argv)
    if args.report:
        if args.storage is None:
            stop(SettingError("--report", "on", "a study's --storage URL as well (make compare-report NAME= STORAGE=)"))
        try:
            report_from_storage(args.name, args.storage, args.output)
        except StorageError as err:
            stop(err, code=err.code)
        except SettingError as err:
            stop(err)
        return
    if args.seeds is None:
        args.seeds = "0,1,2" if args.until_decided else "0,1,2,3,4"
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        stop(SettingError("--seeds", args.seeds, "comma-separated integers, e.g. 0,1,2"))
    if args.sweep is not None and args.experiments is not None:
        stop(SettingError("--experiments", args.experiments, "either --experiments or --sweep",
                          f"cannot go with --sweep={args.sweep} (a sweep's experiments are its points)"))
    experiments = None if args.experiments is None else [e.strip() for e in args.experiments.split(",") if e.strip()]
    try:
        rows, results = compare(experiments, seeds, args.name, args.dataset, args.trainer_config, args.output,
                                args.extra, args.vary, args.jobs, replicate=args.replicate, sweep=args.sweep,
                                until_decided=args.until_decided, claims=args.claims, max_seeds=args.max_seeds,
                                round_size=args.round, margin=args.margin, command=command_line(args),
                                storage=args.storage, heartbeat=args.heartbeat, baseline=args.baseline,
                                error=args.error)
    except StorageError as err:
        stop(err, code=err.code)
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
