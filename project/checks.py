"""Every setting checked before any work: one line that names the setting, its value and what is allowed.

The constructors of the model, data module and callbacks check their own arguments. What no
constructor of ours sees is checked here, on the parsed configuration, before the seed is set,
any class is built or any data is read: the Trainer's numeric arguments, the schedulers' arguments
(torch accepts many values that crash later or train garbage), the metric names that early stopping
and checkpoints monitor, the seeds, and the config files themselves. jsonargparse's own multi-line
errors are rewritten here into the same one-line form.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Callable

# numpy's and scikit-learn's seeds are 32-bit; torch's would take more.
MAX_SEED = 2**32 - 1


class SettingError(ValueError):
    """A setting with a value that is not allowed."""


def fail(setting: str, value: Any, allowed: str, why: str = "") -> None:
    shown = list(value) if isinstance(value, tuple) else value
    raise SettingError(f"{setting}={shown}{f' {why}' if why else ''}; allowed: {allowed}")


def is_integer(value) -> bool:
    """An int, not a bool (YAML's true is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """An int or float, not a bool, not NaN or infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    text = f"a number in {interval}" if math.isfinite(high) else f"a finite number {'>' if low_open else '>='} {low:g}"
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
    "lr": NON_NEGATIVE, "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "lr_decay": NON_NEGATIVE,
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


# --- what the model logs, for the monitors --------------------------------------------------------

def monitorable_metrics(clean_train: bool, penalty: bool) -> list[str]:
    """The epoch metrics ImageClassifier logs during fit (project/model.py): what a monitor can watch."""
    names = ["train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best",
             "weights/l2_norm", "weights/zero_fraction", "weights/near_zero_fraction"]
    if clean_train:
        names += ["train/loss_clean", "train/acc_clean", "gap/acc", "diagnosis/bias", "diagnosis/variance"]
    if penalty:
        names.append("train/penalty")
    return sorted(names)


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


# --- the whole configuration ----------------------------------------------------------------------

def check_settings(config, subcommand: str | None) -> None:
    """Raises SettingError for the first setting that is not allowed (the parsed config of a subcommand)."""
    seed = _get(config, "seed_everything")
    if not isinstance(seed, bool) and not (is_integer(seed) and 0 <= seed <= MAX_SEED):
        fail("seed_everything", seed, f"true (a random seed), false (none) or an integer in [0, {MAX_SEED}]")
    trainer = _get(config, "trainer", {})
    _apply(TRAINER_RULES, trainer, "trainer")
    data = _get(config, "data", {})
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
    metrics = monitorable_metrics(_get(data, "clean_train_size", 1) != 0, penalized)
    validation_on = _get(trainer, "limit_val_batches", 1) != 0
    stoppers = [("early_stopping", _get(config, "early_stopping"))]
    checkpoints = []
    for i, callback in enumerate(_get(trainer, "callbacks", []) or []):
        name = _short(callback.get("class_path", "")) if hasattr(callback, "get") else ""
        if name == "EarlyStopping":
            stoppers.append((f"trainer.callbacks[{i}]", callback))
        elif name == "ModelCheckpoint":
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


# --- jsonargparse's errors, in one line ------------------------------------------------------------

_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "NoneType": "null", "list": "a list", "dict": "a mapping {key: value}", "tuple": "a list"}


_CLASS_WORDS = "a class name"
# The settings whose value is a class: what to suggest for them.
CLASS_KEYS = {"model.net": "ConvNet, MLP or a class path of a project.nn.Network",
              "model.optimizer": "an optimizer class: SGD, Adagrad, RMSprop, Adam, AdamW or a torch.optim class path",
              "model.scheduler": "a scheduler class: StepLR, CosineAnnealingLR, OneCycleLR ... or a "
                                 "torch.optim.lr_scheduler class path",
              "early_stopping": "EarlyStopping or a class path of a subclass of it",
              "trainer.logger": "a logger class such as TensorBoardLogger, true or false"}


def _allowed_from(text: str) -> str:
    found: list[str] = []
    for match in re.finditer(r"Expected a (<class '([\w.]+)'>|typing\.Literal\[(.*?)\]|tuple with (\d+) elements|"
                             r"dot import path string)", text):
        cls, literal, size = match.group(2), match.group(3), match.group(4)
        if cls:
            word = _TYPE_WORDS.get(cls.rsplit(".", 1)[-1], f"a {cls.rsplit('.', 1)[-1]}")
        elif literal is not None:
            word = "one of " + literal.replace("'", "")
        elif size:
            word = f"a list of {size} values"
        else:
            word = _CLASS_WORDS
        if word not in found:
            found.append(word)
    return " or ".join(found) or "see --help"


def _init_settings(class_path: str) -> list[str]:
    """The constructor arguments of a class given by its import path (none if it cannot be imported)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


def constructor_error(message: str) -> str:
    """A constructor's own message out of jsonargparse's union report around it (a callback in a list)."""
    text = " ".join(str(message).split())
    if "Does not validate against any of the Union subtypes" not in text:
        return text
    inner = re.search(r"Errors: - (.*?) - (?:Not a valid subclass|Expected a|Problem with)", text)
    return inner.group(1) if inner else one_line_parse_error(text)


def one_line_parse_error(message: str, known_keys: list[str] | None = None) -> str:
    """jsonargparse's nested, multi-line message as ``<setting>=<value> ...; allowed: ...``."""
    text = " ".join(str(message).split())
    # a flag, or a key of a config file, that no setting has
    unknown = re.match(r"unrecognized arguments: (\S+)", text) or re.match(
        r"(?:Option|Subcommand '\w+' does not accept option) '([^']+)'", text)
    if unknown:
        key = unknown.group(1).lstrip("-").split("=", 1)[0]
        close = difflib.get_close_matches(key, known_keys or [], n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{key} is not a setting{hint}; allowed: the keys `project fit --print_config` shows"
    keys = [k for k in re.findall(r'Parser key "([^"]+)"', text)]
    key = ".".join(dict.fromkeys(keys))
    last = text.rfind(f'Parser key "{keys[-1]}"') if keys else 0
    tail = text[last:]
    required = re.search(r"the following arguments are required: ([\w, ]+?)(?: - |$|\.)", tail)
    if required:
        names = [n.strip() for n in required.group(1).split(",")]
        owner = re.search(r"class_path='([\w.]+)'", tail)
        owner_name = f" by {_short(owner.group(1))}" if owner else ""
        return (f"{key}.{names[0]} is missing: it is required{owner_name}; allowed: give it, "
                f"e.g. --{key}.{names[0]}=...")
    nested = re.search(r"Option '([^']+)' is not accepted", tail)
    owner = re.search(r"class_path='([\w.]+)'", tail)
    if key and nested:  # a config file's key that the class does not have
        option, settings = nested.group(1), _init_settings(owner.group(1)) if owner else []
        close = difflib.get_close_matches(option, settings, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return (f"{key}.{option} is not a setting of {_short(owner.group(1)) if owner else key}{hint}; "
                f"allowed: {', '.join(settings) or 'see --help'}")
    value = None
    for pattern in (r"Expected a path but (\S+) either", r"Got value: (.+?)(?:\. Got value:| - Expected|$)",
                    r"Given value: (.+?)(?:\. Got value:| - Expected|$)"):
        found = re.search(pattern, tail)
        if found:
            value = found.group(1).rstrip(".")
            break
    if not key:
        return text
    why = ""
    inner = re.search(r"Problem with given class_path '[\w.]+': (.*?)(?: - Expected|$)", tail)
    if inner and "Parser key" not in inner.group(1):
        why = f" ({inner.group(1)})"
    allowed = _allowed_from(tail)
    if key in CLASS_KEYS:
        allowed = allowed.replace(_CLASS_WORDS, CLASS_KEYS[key])
        if value and "." not in value:
            allowed = f"{allowed} ('{value}' is no such class)"
    else:  # a number typed Union[float, Tensor] also "expects" an import path: not what a user means
        allowed = allowed.replace(f" or {_CLASS_WORDS}", "").replace(_CLASS_WORDS, "see --help")
    return f"{key}={value if value is not None else '?'} is not valid{why}; allowed: {allowed}"
