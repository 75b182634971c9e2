"""Hyper-parameter search: an Optuna study whose trials are ordinary ``project fit`` runs.

    python -m project.search                                   # configs/search/default.yaml, 20 trials
    python -m project.search --space my_space.yaml --trials 50 --timeout 3600 --name big
    python -m project.search --name shared --storage postgresql://user:pw@db/optuna   # on every machine

Each trial samples the search space (a YAML file), runs ``project fit`` with the sampled values as
flags (on top of the space's own config files), logs under ``logs/search/<name>/trials/`` and
reports its metric each epoch, so the median pruner stops trials that trail the others. The study
lives in ``logs/search/<name>/study.db`` (SQLite) unless ``--storage`` names another database:
rerunning the same command resumes it, and several machines pointing at one database share it.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import shlex
import signal
import socket
import sys
from pathlib import Path

import optuna
import yaml
from lightning.pytorch import Callback

from project.errors import ArgumentParser, SettingError, choice, from_line, is_finite_number, is_integer, stop
from project.model.classifier import PER_VALIDATION, VAL_ACC_BEST
from project.run.checks import MAX_SEED
from project.run.cli import CONFIG_DIR, ProjectCLI
from project.run.paths import check_folder_name, check_output
from project.run.progress import quiet_lightning
from project.run.stopping import RunInterrupted, stop_on_sigterm
from project.search.report import write_results
from project.storage import (
    HeartbeatWatch,
    StorageError,
    TrialSeededTPE,
    check_storage,
    database_error,
    masked,
    open_study,
    unreachable,
)

DEFAULT_SPACE = CONFIG_DIR / "search" / "default.yaml"
# What the model logs once per validation: the names a study can optimize.
METRICS = PER_VALIDATION
PRUNERS = {"median": optuna.pruners.MedianPruner, "threshold": optuna.pruners.ThresholdPruner,
           "none": optuna.pruners.NopPruner}


class SearchSpaceError(SettingError):
    """A search space that cannot be searched; raised before any trial."""


def load_space(path: Path) -> dict:
    """The search space file, checked: every problem is one line before any trial runs."""
    try:
        space = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SearchSpaceError("--space", path, "a readable YAML file",
                               f"cannot be read ({' '.join(str(err).split())})") from None
    if not isinstance(space, dict) or not isinstance(space.get("params"), dict) or not space["params"]:
        raise SearchSpaceError("--space", path, "a YAML mapping with params: {setting: distribution}",
                               "has no params")
    unknown = set(space) - {"metric", "direction", "config", "flags", "params", "pruner", "seed"}
    if unknown:
        raise SearchSpaceError(sorted(unknown)[0], space[sorted(unknown)[0]], "config, direction, flags, metric, "
                               "params, pruner, seed", f"is not a key of a search space ({path})")
    space.setdefault("metric", VAL_ACC_BEST)
    space.setdefault("direction", "maximize")
    space.setdefault("config", [])
    space.setdefault("flags", [])
    space.setdefault("pruner", {"type": "median"})
    space.setdefault("seed", 0)
    if space["metric"] not in METRICS:
        raise SearchSpaceError("metric", space["metric"], ", ".join(METRICS), "is not a metric the model logs "
                               "at each validation")
    if space["direction"] not in ("maximize", "minimize"):
        raise SearchSpaceError("direction", space["direction"], "maximize, minimize")
    if not (is_integer(space["seed"]) and 0 <= space["seed"] <= MAX_SEED):
        raise SearchSpaceError("seed", space["seed"], f"an integer in [0, {MAX_SEED}] (the TPE sampler's seed)")
    if not isinstance(space["flags"], list) or not isinstance(space["config"], list):
        raise SearchSpaceError("flags" if not isinstance(space["flags"], list) else "config",
                               space["flags"] if not isinstance(space["flags"], list) else space["config"], "a list")
    make_pruner(space["pruner"])
    for key, spec in space["params"].items():
        check_distribution(key, spec)
    return space


def make_pruner(spec) -> optuna.pruners.BasePruner:
    """The space's pruner: its type from PRUNERS, its other keys that pruner's own arguments."""
    if not isinstance(spec, dict):
        raise SearchSpaceError("pruner", spec, "a mapping such as {type: median, n_startup_trials: 3}")
    settings = dict(spec)
    kind = settings.pop("type", "median")
    try:
        cls = choice(PRUNERS, "pruner.type", kind)
    except SettingError as err:
        raise SearchSpaceError(err.setting, err.value, err.allowed, err.why) from None
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    for key, value in settings.items():
        if key not in allowed:
            raise SearchSpaceError(f"pruner.{key}", value, ", ".join(allowed) or "no settings",
                                   f"is not a setting of the {kind} pruner")
    try:
        return cls(**settings)
    except (ValueError, TypeError) as err:
        raise SearchSpaceError("pruner", spec, f"settings optuna's {cls.__name__} accepts",
                               f"cannot be built ({' '.join(str(err).split())})") from None


# The keys a parameter's distribution may have, by type.
PARAM_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
              "categorical": ("type", "choices")}


def check_distribution(key: str, spec) -> None:
    if not isinstance(spec, dict) or spec.get("type") not in PARAM_KEYS:
        raise SearchSpaceError(f"params.{key}", spec, "{type: float, int or categorical, ...}",
                               "has no known type")
    kind = spec["type"]
    for extra in set(spec) - set(PARAM_KEYS[kind]):
        raise SearchSpaceError(f"params.{key}.{extra}", spec[extra], ", ".join(PARAM_KEYS[kind]),
                               f"is not a setting of a {kind} parameter")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SearchSpaceError(f"params.{key}.choices", choices, "a non-empty list")
        for value in choices:
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise SearchSpaceError(f"params.{key}.choices", value, "a string, number, true, false or null")
        return
    number = is_integer if kind == "int" else is_finite_number
    for end in ("low", "high"):
        if not number(spec.get(end)):
            raise SearchSpaceError(f"params.{key}.{end}", spec.get(end), "an integer" if kind == "int" else
                                   "a finite number")
    low, high = spec["low"], spec["high"]
    if low > high:
        raise SearchSpaceError(f"params.{key}.low", low, f"a number <= high ({high})")
    if spec.get("log") and low <= 0:
        raise SearchSpaceError(f"params.{key}.low", low, "a number > 0 with log: true")
    if "step" in spec:
        if not (number(spec["step"]) and spec["step"] > 0):
            raise SearchSpaceError(f"params.{key}.step", spec["step"], f"{'an integer' if kind == 'int' else 'a number'} > 0")
        if spec.get("log"):
            raise SearchSpaceError(f"params.{key}.step", spec["step"], "no step with log: true (optuna's rule)")


def suggest(trial: optuna.Trial, params: dict) -> dict:
    values = {}
    for key, spec in params.items():
        if spec["type"] == "categorical":
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                            log=bool(spec.get("log")))
        else:
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), step=spec.get("step"),
                                              log=bool(spec.get("log")))
    return values


def base_args(space: dict, extra: list[str]) -> list[str]:
    # Every trial ticks the searched settings in TensorBoard's hparams tab.
    return [arg for f in space["config"] for arg in ("--config", str(f))] + list(space["flags"]) + list(extra) + [
        f"--hparams.varied=[{', '.join(sorted(space['params']))}]"]


def as_flags(values: dict) -> list[str]:
    return [f"--{key}={value}" for key, value in values.items()]


def parse_quietly(args: list[str]) -> ProjectCLI:
    """The CLI's configuration for these flags, built but not run; a bad one raises SearchSpaceError."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return ProjectCLI(args=args, run=False)
    except SystemExit:
        error = from_line(stderr.getvalue().strip().splitlines()[-1])
        raise SearchSpaceError(error.setting, error.value, error.allowed) from None


def check_keys(space: dict, extra: list[str]) -> None:
    """Build the configuration with every parameter at its low end (first choice), then with each
    parameter in turn at each of its other choices and its high end: an unknown key or a value a
    setting refuses stops here, before any trial."""
    ends = {key: spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
            for key, spec in space["params"].items()}
    searched = {key.replace(".init_args.", "."): key for key in space["params"]}
    for arg in extra:  # a flag for a searched setting would be overridden by every trial's value
        key, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("--") and key.replace(".init_args.", ".") in searched:
            raise SearchSpaceError(key, value, "flags after -- for the settings the space does not search (change "
                                   "its range in the space file instead)", f"is searched by the space ({key} is its "
                                   f"parameter {searched[key.replace('.init_args.', '.')]}), which sets it in every trial")
    base = {key: values[0] for key, values in ends.items()}
    samples = [base] + [{**base, key: value} for key, values in ends.items() for value in values[1:]]
    for sample in samples:
        parse_quietly(base_args(space, extra) + as_flags(sample))


class ReportToTrial(Callback):
    """Reports the metric to the trial after every validation and stops the run when the pruner
    says the trial trails the others (Optuna's trial.report / should_prune)."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric

    def on_validation_end(self, trainer, pl_module) -> None:  # after the module has logged the epoch
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics[self.metric]), step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {trainer.current_epoch + 1}")


WORKER = f"{socket.gethostname()}:{os.getpid()}"


def make_objective(space: dict, extra: list[str], trials_dir: Path, started: list[int] | None = None):
    def objective(trial: optuna.Trial) -> float:
        if started is not None:
            started.append(trial.number)
        values = suggest(trial, space["params"])
        trial.set_user_attr("flags", as_flags(values))
        trial.set_user_attr("worker", WORKER)
        version = f"trial_{trial.number:04d}"
        run_dir = trials_dir / version
        run_dir.mkdir(parents=True, exist_ok=True)
        args = ["fit", *base_args(space, extra), *as_flags(values), f"--trainer.logger.init_args.save_dir={trials_dir.parent}",
                f"--trainer.logger.init_args.name={trials_dir.name}", f"--trainer.logger.init_args.version={version}",
                "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--test_after_fit=false"]
        with open(run_dir / "stdout.txt", "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            cli = ProjectCLI(args=args, trainer_defaults={"callbacks": [ReportToTrial(trial, space["metric"])]})
        if space["metric"] not in cli.trainer.callback_metrics:
            raise RuntimeError(f"the run logged no {space['metric']} (see {run_dir}/stdout.txt)")
        return float(cli.trainer.callback_metrics[space["metric"]])
    return objective


class SearchInterrupted(Exception):
    """SIGTERM or Ctrl-C stopped the search; the running trial is marked FAIL."""

    def __init__(self, signum: int, line: str):
        super().__init__(line)
        self.signum = signum


def search(space_path: Path, name: str, trials: int, timeout: float | None = None, storage: str | None = None,
           output: str = "logs/search", extra: list[str] | None = None, echo=print, heartbeat: int = 60,
           command: str = "the same command") -> optuna.Study:
    extra = list(extra or [])
    if not is_integer(trials) or trials < 1:
        raise SearchSpaceError("--trials", trials, "an integer >= 1")
    if timeout is not None and not (is_finite_number(timeout) and timeout > 0):
        raise SearchSpaceError("--timeout", timeout, "a finite number of seconds > 0")
    if not is_integer(heartbeat) or heartbeat < 1:
        raise SearchSpaceError("--heartbeat", heartbeat, "an integer number of seconds >= 1")
    space = load_space(space_path)
    quiet_lightning(logging.WARNING)
    # optuna logs a failed trial with its traceback; the search says what happened in its own lines.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if storage is not None:
        check_storage(storage)  # the driver there and the database answering, before any folder
    check_keys(space, extra)
    out_dir = Path(output) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{out_dir / 'study.db'}"
    study = open_study(name, storage, space["direction"], TrialSeededTPE(space["seed"]), make_pruner(space["pruner"]),
                       heartbeat)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    echo(f"search {name}: {done} trials done before, budget {trials}" + (f" or {timeout:g} s" if timeout else "")
         + f"; storage {masked(storage)}")

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        value = f"{space['metric']} {trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        if trial.state == optuna.trial.TrialState.PRUNED:
            value = f"pruned after {len(trial.intermediate_values)} epochs"
        echo(f"trial {trial.number}: {value}  {' '.join(trial.user_attrs.get('flags', []))}  | {best}")

    def results() -> dict:
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial shows as FAIL, not RUNNING
        return write_results(study, space, out_dir, lambda flags: dump_config(base_args(space, extra) + flags))

    if done < trials:
        previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
        try:
            started: list[int] = []  # the numbers of this worker's trials
            with HeartbeatWatch() as watch:
                study.optimize(make_objective(space, extra, out_dir / "trials", started), timeout=timeout, catch=(RuntimeError,),
                               callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished), progress])
        except (RunInterrupted, KeyboardInterrupt) as err:
            signum = err.signum if isinstance(err, RunInterrupted) else signal.SIGINT
            results()
            trial = f" during trial {started[-1]} (marked FAIL)" if started else ""
            raise SearchInterrupted(signum, f"search {name} stopped by {signal.Signals(signum).name}{trial}; finished "
                                    f"trials are kept in {masked(storage)}; resume with: {command}") from None
        except Exception as err:
            lost = database_error(err) or watch.error
            if lost is None:
                raise
            failure = unreachable(storage, lost)
            failure.code = 1  # it answered when the search began: an outage, not a setting
            raise failure from None
        finally:
            signal.signal(signal.SIGTERM, previous)
    written = results()
    echo(f"written to {out_dir}/: {', '.join(p.name for p in written.values())}; tensorboard --logdir {out_dir / 'trials'}")
    return study


def dump_config(args: list[str]) -> str:
    cli = parse_quietly(args)
    return cli.parser.dump(cli.config, skip_none=False)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m project.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=str(DEFAULT_SPACE), help="the search space YAML (default: %(default)s)")
    parser.add_argument("--name", default="default", help="the study's name and folder under --output")
    parser.add_argument("--trials", type=int, default=20, help="finished trials (complete or pruned) in the study")
    parser.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    parser.add_argument("--storage", default=None, help="an Optuna storage URL shared by several machines "
                        "(default: sqlite:///<output>/<name>/study.db)")
    parser.add_argument("--heartbeat", type=int, default=60, help="seconds between a running trial's heartbeats; a "
                        "trial silent for twice that (its worker died) is marked FAIL and retried once")
    parser.add_argument("--output", default="logs/search")
    parser.add_argument("extra", nargs="*", help="more CLI flags for every trial, after --, e.g. -- --trainer.max_epochs=5")
    given = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(given)
    command = " ".join(["python -m project.search", *(shlex.quote(masked(a)) for a in given)])
    # Each trial's flags are passed as args; Lightning warns when it also sees sys.argv, and its
    # warning would copy the storage URL, password included, into every trial's stdout.txt.
    sys.argv = sys.argv[:1]
    try:
        check_folder_name("--name", args.name)
        check_output("--output", Path(args.output))
        search(Path(args.space), args.name, args.trials, args.timeout, args.storage, args.output, args.extra,
               heartbeat=args.heartbeat, command=command)
    except StorageError as err:
        stop(err, code=err.code)
    except SettingError as err:
        stop(err)
    except SearchInterrupted as err:
        print(err, file=sys.stderr, flush=True)
        sys.exit(128 + err.signum)


if __name__ == "__main__":
    main()
