"""Every setting checked before any work: one line that names the setting, its value and what is allowed.

The constructors of the model, data module and callbacks check their own arguments. What no
constructor of ours sees is checked here: on the parsed configuration, before the seed is set or
any class is built (the Trainer's numeric arguments, the schedulers' arguments, which torch accepts
and then crashes on or trains garbage with, the metrics early stopping and checkpoints monitor,
the seeds, the config files); then on the built objects, before any log folder exists (memory,
batch norm's batches, the run's length against the schedule, writable logs).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from project import memory
from project.devices import will_fork
from project.errors import fail, is_finite_number, is_integer
from project.model import schedules
from project.model.build import network_settings
from project.model.classifier import fit_metrics
from project.run.paths import check_path

# numpy's and scikit-learn's seeds are 32-bit; torch's would take more.
MAX_SEED = 2**32 - 1


# --- rules: (test, what is allowed) ---------------------------------------------------------------

Rule = tuple[Callable[[Any], bool], str]


def int_at_least(low: int, none: bool = False) -> Rule:
    return (lambda v: (none and v is None) or (is_integer(v) and v >= low),
            f"an integer >= {low}{' or null' if none else ''}")


def number_in(low: float, high: float, low_open: bool = False, high_open: bool = False, none: bool = False) -> Rule:
    def test(v) -> bool:
        if none and v is None:
            return True
        return (is_finite_number(v) and (v > low if low_open else v >= low)
                and (v < high if high_open else v <= high))
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    text = (f"a number in {interval}" if math.isfinite(high) else "a finite number" if not math.isfinite(low)
            else f"a finite number {'>' if low_open else '>='} {low:g}")
    return test, text + (" or null" if none else "")


POSITIVE = number_in(0, math.inf, low_open=True)
NON_NEGATIVE = number_in(0, math.inf)


def _batches(v) -> bool:
    return (is_integer(v) and v >= 1) or (is_finite_number(v) and isinstance(v, float) and 0 < v <= 1)


def _batches_or_off(v) -> bool:
    return (is_integer(v) and v >= 0) or (is_finite_number(v) and isinstance(v, float) and 0 <= v <= 1)


def _devices(v) -> bool:
    if isinstance(v, str):
        v = v.strip()
        if v == "auto":
            return True
        parts = [p for p in v.split(",") if p.strip()]
        if len(parts) > 1 or v.endswith(","):  # "0,1": these GPU indices
            return all(p.strip().isdigit() for p in parts)
        return v.lstrip("-").isdigit() and (int(v) >= 1 or int(v) == -1)
    if isinstance(v, (list, tuple)):
        return len(v) > 0 and all(is_integer(d) and d >= 0 for d in v)
    return is_integer(v) and (v >= 1 or v == -1)


def _strategy(v) -> bool:
    from lightning.pytorch.strategies import StrategyRegistry

    return not isinstance(v, str) or v == "auto" or v in StrategyRegistry.available_strategies()


def _duration(v) -> bool:
    """Lightning's max_time: "DD:HH:MM:SS", or a mapping of days, hours, minutes, seconds."""
    if isinstance(v, str):
        parts = v.split(":")
        return len(parts) == 4 and all(p.isdigit() for p in parts)
    if hasattr(v, "items"):
        return bool(v) and all(k in ("days", "hours", "minutes", "seconds") and is_finite_number(x) and x >= 0
                               for k, x in v.items())
    return v is None


TRAINER_RULES: dict[str, Rule] = {
    "devices": (_devices, "auto, a number of devices >= 1, -1 (all) or a list of device indices such as [0, 1]"),
    "max_epochs": (lambda v: v is None or (is_integer(v) and v >= -1), "an integer >= 0, -1 (no limit) or null"),
    "min_epochs": int_at_least(0, none=True),
    "max_steps": (lambda v: is_integer(v) and v >= -1, "an integer >= 1, or -1 (no limit)"),
    "min_steps": int_at_least(0, none=True),
    "accumulate_grad_batches": int_at_least(1),
    "check_val_every_n_epoch": int_at_least(1, none=True),
    "val_check_interval": (lambda v: v is None or _batches(v),
                           "a fraction of an epoch in (0, 1], a number of training batches >= 1, or null"),
    "log_every_n_steps": int_at_least(1, none=True),
    "gradient_clip_val": number_in(0, math.inf, none=True),
    "limit_train_batches": (lambda v: v is None or _batches(v),
                            "a fraction in (0, 1] or a number of batches >= 1 (training needs batches)"),
    "limit_val_batches": (lambda v: v is None or _batches_or_off(v), "a fraction in [0, 1] or a number of batches >= 0"),
    "limit_test_batches": (lambda v: v is None or _batches(v), "a fraction in (0, 1] or a number of batches >= 1"),
    "limit_predict_batches": (lambda v: v is None or _batches(v), "a fraction in (0, 1] or a number of batches >= 1"),
    "num_sanity_val_steps": int_at_least(-1, none=True),
    "overfit_batches": (lambda v: _batches_or_off(v), "a fraction in [0, 1] or a number of batches >= 0"),
    "num_nodes": int_at_least(1),
    "fast_dev_run": (lambda v: isinstance(v, bool) or (is_integer(v) and v >= 0), "true, false or a number of batches >= 0"),
    "strategy": (_strategy, "auto, ddp, ddp_spawn, ddp_fork, ddp_notebook, fsdp, deepspeed, single_device ... or a "
                 "Strategy class"),
    "max_time": (_duration, "DD:HH:MM:SS such as 00:12:00:00, a mapping such as {hours: 12}, or null"),
}

# torch.optim.lr_scheduler's arguments: torch checks a few; the rest crash later or train garbage.
GAMMA = number_in(0, math.inf, low_open=True)
SCHEDULER_RULES: dict[str, dict[str, Rule]] = {
    "StepLR": {"step_size": int_at_least(1), "gamma": GAMMA},
    "MultiStepLR": {"milestones": (lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                                   and all(is_integer(m) and m >= 1 for m in v),
                                   "a non-empty list of epochs >= 1"), "gamma": GAMMA},
    "ExponentialLR": {"gamma": GAMMA},
    "CosineAnnealingLR": {"T_max": int_at_least(1, none=True), "eta_min": NON_NEGATIVE},
    "CosineAnnealingWarmRestarts": {"T_0": int_at_least(1), "T_mult": int_at_least(1), "eta_min": NON_NEGATIVE},
    "OneCycleLR": {"max_lr": (lambda v: all(is_finite_number(x) and x > 0 for x in (v if isinstance(v, (list, tuple)) else [v])),
                              "a finite number > 0 (or one per parameter group)"),
                   "total_steps": int_at_least(2, none=True), "epochs": int_at_least(1, none=True),
                   "steps_per_epoch": int_at_least(1, none=True),
                   "pct_start": number_in(0, 1, low_open=True, high_open=True),
                   "div_factor": POSITIVE, "final_div_factor": POSITIVE,
                   "base_momentum": number_in(0, 1), "max_momentum": number_in(0, 1)},
    "CyclicLR": {"base_lr": POSITIVE, "max_lr": POSITIVE, "step_size_up": int_at_least(1),
                 "step_size_down": int_at_least(1, none=True), "gamma": GAMMA},
    "LinearLR": {"start_factor": number_in(0, 1, low_open=True), "end_factor": number_in(0, 1),
                 "total_iters": int_at_least(1, none=True)},
    "ConstantLR": {"factor": number_in(0, 1), "total_iters": int_at_least(0)},
    "PolynomialLR": {"total_iters": int_at_least(1, none=True), "power": NON_NEGATIVE},
    "ReduceLROnPlateau": {"factor": number_in(0, 1, low_open=True, high_open=True), "patience": int_at_least(0),
                          "threshold": NON_NEGATIVE, "cooldown": int_at_least(0), "min_lr": NON_NEGATIVE,
                          "eps": NON_NEGATIVE},
}

# torch.optim's arguments, by name: torch refuses some with messages that do not name the setting,
# and lets others through (momentum 1.5, a beta of 1).
OPTIMIZER_RULES: dict[str, Rule] = {
    "lr": POSITIVE, "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "lr_decay": NON_NEGATIVE,
    "initial_accumulator_value": NON_NEGATIVE,
    "momentum": number_in(0, 1, high_open=True), "dampening": number_in(0, 1), "alpha": number_in(0, 1),
    "betas": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(is_finite_number(b) and 0 <= b < 1 for b in v),
              "two numbers in [0, 1), e.g. [0.9, 0.999]"),
}

MODE: Rule = (lambda v: v in ("min", "max"), "min or max")
EARLY_STOPPING_RULES: dict[str, Rule] = {
    "patience": int_at_least(0), "min_delta": number_in(-math.inf, math.inf), "mode": MODE,
    "stopping_threshold": number_in(-math.inf, math.inf, none=True),
    "divergence_threshold": number_in(-math.inf, math.inf, none=True),
}
CHECKPOINT_RULES: dict[str, Rule] = {
    "mode": MODE, "save_top_k": int_at_least(-1),
    "every_n_epochs": int_at_least(0, none=True), "every_n_train_steps": int_at_least(0, none=True),
}


# Lightning's weight averaging swaps the averaged weights in at fit end, after the best checkpoint
# (the raw weights) was chosen.
WEIGHT_AVERAGING = ("StochasticWeightAveraging", "EMAWeightAveraging", "WeightAveraging")


def _apply(rules: dict[str, Rule], values, prefix: str) -> None:
    for key, (test, allowed) in rules.items():
        if key in values and not test(values[key]):
            fail(f"{prefix}.{key}", values[key], allowed)


def _get(namespace, key: str, default=None):
    value = namespace.get(key, default) if hasattr(namespace, "get") else default
    return default if value is None and default is not None else value


def _short(class_path: str) -> str:
    return str(class_path).rsplit(".", 1)[-1]


# --- the whole configuration ----------------------------------------------------------------------


def _check_monitor(setting: str, monitor, metrics: list[str], validation_on: bool) -> None:
    if monitor is None:
        return
    if monitor not in metrics:
        close = difflib.get_close_matches(str(monitor), metrics, n=1)
        fail(setting, monitor, ", ".join(metrics), "is not a metric the model logs"
             + (f" (did you mean {close[0]}?)" if close else ""))
    if not validation_on and monitor.split("/")[0] in ("val", "gap", "diagnosis"):
        fail(setting, monitor, "a monitor on train/ metrics, or trainer.limit_val_batches > 0",
             "is measured in validation, which trainer.limit_val_batches=0 turns off")


def _check_accelerator(value) -> None:
    """A GPU asked for where torch finds none stops here, not in Lightning's "No supported gpu backend"."""
    import torch

    if value in ("gpu", "cuda") and not torch.cuda.is_available():
        fail("trainer.accelerator", value, "auto or cpu: torch finds no CUDA GPU on this machine")
    if value == "mps" and not torch.backends.mps.is_available():
        fail("trainer.accelerator", value, "auto or cpu: torch finds no Apple GPU (MPS) on this machine")


def _on_gpu(accelerator) -> bool:
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator in ("auto", None) and torch.cuda.is_available())


def _check_paths(config, trainer) -> None:
    data = _get(config, "data", {})
    data = _get(data, "init_args", data)
    logger = _get(trainer, "logger")
    logger = _get(logger, "init_args", {}) if hasattr(logger, "get") else {}
    for setting, value in (("ckpt_path", _get(config, "ckpt_path")), ("data.data_dir", _get(data, "data_dir")),
                           ("data.stream_dir", _get(data, "stream_dir")),
                           ("trainer.default_root_dir", _get(trainer, "default_root_dir")),
                           *((f"trainer.logger.{k}", _get(logger, k)) for k in ("save_dir", "name", "version"))):
        check_path(setting, value)


def check_settings(config, subcommand: str | None) -> None:
    """Raises SettingError for the first setting that is not allowed (the parsed config of a subcommand)."""
    ckpt_path = _get(config, "ckpt_path")
    if isinstance(ckpt_path, str) and not ckpt_path.strip():
        fail("ckpt_path", ckpt_path, "a checkpoint file, last, or no --ckpt_path", "is empty")
    seed = _get(config, "seed_everything")
    if not isinstance(seed, bool) and not (is_integer(seed) and 0 <= seed <= MAX_SEED):
        fail("seed_everything", seed, f"true (a random seed), false (none) or an integer in [0, {MAX_SEED}]")
    trainer = _get(config, "trainer", {})
    _check_paths(config, trainer)
    _apply(TRAINER_RULES, trainer, "trainer")
    _check_accelerator(_get(trainer, "accelerator"))
    if _get(trainer, "sync_batchnorm") is True and not _on_gpu(_get(trainer, "accelerator")):
        fail("trainer.sync_batchnorm", True, "false on a CPU (each process keeps its own batch statistics)",
             "needs GPUs: torch's SyncBatchNorm runs on CUDA devices only")
    data = _get(config, "data", {})
    data = _get(data, "init_args", data)  # data is a class: its settings are its init_args
    data_seed = _get(data, "seed", 0)
    if not (is_integer(data_seed) and 0 <= data_seed <= MAX_SEED):
        fail("data.seed", data_seed, f"an integer in [0, {MAX_SEED}]")
    model = _get(config, "model", {})
    optimizer = _get(model, "optimizer")
    if hasattr(optimizer, "get") and optimizer.get("init_args"):
        args = optimizer["init_args"]
        _apply(OPTIMIZER_RULES, args, "model.optimizer")
        if args.get("nesterov") and (not args.get("momentum") or args.get("dampening")):
            fail("model.optimizer.nesterov", True, "momentum > 0 and dampening 0 with it",
                 f"with momentum={args.get('momentum')} and dampening={args.get('dampening')}")
    scheduler = _get(model, "scheduler")
    if hasattr(scheduler, "get") and scheduler.get("class_path"):
        name = _short(scheduler["class_path"])
        _apply(SCHEDULER_RULES.get(name, {}), scheduler.get("init_args") or {}, "model.scheduler")
    if subcommand != "fit":
        return
    penalty = _get(config, "penalty", {})
    penalized = any(is_finite_number(_get(penalty, k, 0)) and _get(penalty, k, 0) > 0 for k in ("l1", "l2"))
    metrics = fit_metrics(_get(data, "clean_train_size", 1) != 0, penalized)
    validation_on = _get(trainer, "limit_val_batches", 1) != 0
    stoppers = [("early_stopping", _get(config, "early_stopping"))]
    checkpoints = []
    for i, callback in enumerate(_get(trainer, "callbacks", []) or []):
        name = _short(callback.get("class_path", "")) if hasattr(callback, "get") else ""
        if name == "EarlyStopping":
            stoppers.append((f"trainer.callbacks[{i}]", callback))
        elif name in ("ModelCheckpoint", "BestCheckpoint"):
            checkpoints.append((f"trainer.callbacks[{i}]", callback))
        elif name in WEIGHT_AVERAGING:
            fail(f"trainer.callbacks[{i}]", name, "the callbacks of configs/default.yaml and others that keep the "
                 "weights as trained; for averaged weights use model.scheduler or a larger "
                 "early_stopping.patience", "is not supported: the checkpoints, the test and the run summary "
                 "would mix averaged and raw weights")
    for prefix, callback in stoppers:
        if hasattr(callback, "get") and callback.get("init_args") is not None:
            args = callback["init_args"]
            _apply(EARLY_STOPPING_RULES, args, prefix)
            _check_monitor(f"{prefix}.monitor", args.get("monitor"), metrics, validation_on)
    if _get(trainer, "enable_checkpointing", True) is not False:
        for prefix, callback in checkpoints:
            args = callback.get("init_args") or {}
            _apply(CHECKPOINT_RULES, args, prefix)
            _check_monitor(f"{prefix}.monitor", args.get("monitor"), metrics, validation_on)


# The top-level sections of a config file and the YAML values each may have.
SECTION_TYPES = {"trainer": (dict,), "model": (dict,), "penalty": (dict,), "hparams": (dict,),
                 "data": (dict, str), "early_stopping": (dict, str, type(None))}


def check_config_files(args: list[str]) -> None:
    """Each ``--config FILE`` is a readable YAML mapping: jsonargparse's own errors for an empty file
    or a list do not say which file or what is wrong."""
    import yaml

    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        if path.lstrip().startswith("{"):  # an inline YAML/JSON string
            continue
        check_path("--config", path)
        file = Path(path)
        if not file.is_file():
            fail("--config", path, "a YAML file that exists", "is not a file")
        try:
            content = yaml.safe_load(file.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            reason = " ".join(str(err).split())
            fail("--config", path, "a readable YAML mapping of settings", f"cannot be read ({reason})")
        if not isinstance(content, dict):
            what = "is empty" if content is None else f"holds a YAML {type(content).__name__}, not a mapping"
            fail("--config", path, "a YAML mapping of settings such as 'trainer: {max_epochs: 5}'", what)
        for section, types in SECTION_TYPES.items():
            if section in content and not isinstance(content[section], types):
                fail(section, content[section], f"a mapping of its settings, such as '{section}: {{...}}'",
                     f"in {path} is a YAML {type(content[section]).__name__}")


# --- the built objects, before any data is read or any folder made ---------------------------------


def check_built(model, datamodule, trainer, subcommand: str | None) -> None:
    """What needs the model, data module and trainer built: the run's length against the schedule,
    batch norm's batches, and the memory a batch needs."""
    if subcommand == "fit" and model.needs_run_length and trainer.max_epochs == -1 and trainer.max_steps == -1:
        scheduler = model.hparams.scheduler
        fail("trainer.max_epochs", -1, "a positive trainer.max_epochs or trainer.max_steps, or the scheduler's own "
             "length (T_max, total_steps, total_iters)", "(train until stopped) leaves model.scheduler "
             f"({scheduler.get('class_path', scheduler) if isinstance(scheduler, dict) else scheduler}) without a length")
    batch_size, eval_batch_size = (getattr(datamodule, "hparams", {}).get(k) for k in ("batch_size", "eval_batch_size"))
    if not (is_integer(batch_size) and is_integer(eval_batch_size)):  # a data module of the user's own
        return
    if hasattr(datamodule, "batch_per_process"):  # batch_size_total shared out over this run's processes
        batch_size = datamodule.batch_per_process(trainer.world_size, trainer.accumulate_grad_batches)
    if batch_size <= 1 and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        fail("data.batch_size", batch_size, "an integer >= 2 with norm=batch, or another model.net.norm",
             "leaves batch norm without batch statistics")
    if subcommand is not None:
        memory.check_batches(model.memory, network_settings(model.hparams.get("net")), trainer.strategy.root_device,
                             batch_size, eval_batch_size, will_fork(trainer.strategy))


def check_with_data(model, datamodule, trainer) -> None:
    """The settings that depend on the data's size, checked once it is read: the validation interval
    against an epoch, and the schedule stepped through the whole run."""
    batches = datamodule.train_batches(trainer.world_size, trainer.accumulate_grad_batches)
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif limit is not None:
        batches = max(1, int(batches * limit))
    interval = trainer.val_check_interval
    if isinstance(interval, int) and interval > batches and trainer.check_val_every_n_epoch is not None:
        fail("trainer.val_check_interval", interval, f"a number of batches <= {batches} (an epoch's training "
             "batches) or a fraction in (0, 1]", "is longer than an epoch")
    model.check_schedule(*schedules.run_length(trainer, batches))
