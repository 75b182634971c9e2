"""The one-line error: ``error: <setting>=<value> <why>; allowed: <what>``, and exit code 2.

Every entry point reports a bad setting, file or flag in this one form, raised as SettingError
by whatever found it (a constructor, a check, a data loader) and printed by ``stop``. The tests
assert the form. jsonargparse's own multi-line reports are rewritten into it here too.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import math
import re
import sys
from typing import Any, NoReturn


class SettingError(ValueError):
    """A setting with a value that is not allowed, in the one-line form."""

    def __init__(self, setting: str, value: Any, allowed: str, why: str = ""):
        self.setting, self.value, self.allowed, self.why = setting, value, allowed, why
        super().__init__(f"{setting}={shown(value)}{f' {why}' if why else ''}; allowed: {allowed}")

    def within(self, prefix: str) -> SettingError:
        """The same error for a setting one level down: ``norm`` of ``model.net`` is ``model.net.norm``."""
        return SettingError(f"{prefix}.{self.setting}", self.value, self.allowed, self.why)


class DataError(SettingError):
    """A data set that is missing, damaged or not what its settings promise."""


def from_line(line: str) -> SettingError:
    """An error line another part printed (``error: <setting>=<value> <why>; allowed: <what>``), as
    the SettingError it came from, so a caller can report it as its own."""
    text = " ".join(line.removeprefix("error: ").split())
    head, _, allowed = text.rpartition("; allowed: ")
    setting, _, rest = head.partition("=")
    return SettingError(setting, rest, allowed or "see --help")


def shown(value: Any) -> str:
    """A value as the user typed it: lists as lists, strings without quotes."""
    if isinstance(value, tuple):
        value = list(value)
    text = "''" if value == "" else str(value)
    return text if len(text) <= 200 else f"{text[:60]}...({len(text):,} characters)"


def first_line(err: BaseException, default: str = "") -> str:
    """An error's first non-empty line, stripped: what a one-line message quotes of it."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), default)


def fail(setting: str, value: Any, allowed: str, why: str = "") -> NoReturn:
    raise SettingError(setting, value, allowed, why)


def choice(registry: dict, setting: str, name: str):
    """The registry's entry for ``name``; an unknown name lists the known ones, sorted."""
    if name not in registry:
        close = difflib.get_close_matches(str(name), [str(k) for k in registry], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        fail(setting, name, ", ".join(sorted(registry)), f"is not known{hint}")
    return registry[name]


def is_integer(value) -> bool:
    """An int, not a bool (YAML's true is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """An int or float, not a bool, not NaN or infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def stop(err: BaseException | str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: 2 for a bad setting, file or flag, 1 for a run that failed."""
    print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
    sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for compare, search and lr-find, reporting a bad flag in the one-line form instead of
    its usage text (``--jobs=abc; allowed: an integer``), with exit code 2."""

    WORDS = {"int": "an integer", "float": "a number"}

    def error(self, message: str):
        flag_error = re.match(r"argument ([^:]+): (.*)", message)
        if not flag_error:
            unknown = re.match(r"unrecognized arguments: (\S+)", message)
            flag = unknown.group(1) if unknown else "argument"
            stop(SettingError(flag.split("=", 1)[0], flag.partition("=")[2] or "?", f"the flags `{self.prog} --help` "
                              "shows", "is not a flag"))
        flag, why = flag_error.group(1).split("/")[-1], flag_error.group(2)
        choices = re.match(r"invalid choice: '([^']*)' \(choose from (.*)\)", why)
        bad_type = re.match(r"invalid (\w+) value: '([^']*)'", why)
        if choices:
            stop(SettingError(flag, choices.group(1), choices.group(2).replace("'", ""), "is not known"))
        if bad_type:
            stop(SettingError(flag, bad_type.group(2), self.WORDS.get(bad_type.group(1), bad_type.group(1))))
        stop(SettingError(flag, "", "a value after it, see --help", why))


# --- jsonargparse's errors, in one line ------------------------------------------------------------
# jsonargparse reports a bad value as nested English ("Parser key ... Expected a <class 'int'> ...
# Got value: ..."): the setting, the value and the expected types are read out of it here. The
# phrases matched are those of jsonargparse 4.x (pinned in pyproject.toml); tests/test_errors.py
# holds one case of each.

_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "NoneType": "null", "list": "a list", "dict": "a mapping {key: value}", "tuple": "a list"}
_CLASS_WORDS = "a class name"
# The settings whose value is a class: what to suggest for them.
CLASS_KEYS = {"model.net": "ConvNet, MLP, Timm, TorchVision, or the class path of an importable nn.Module",
              "model.optimizer": "an optimizer class: SGD, Adagrad, RMSprop, Adam, AdamW or a torch.optim class path",
              "model.scheduler": "a scheduler class: StepLR, CosineAnnealingLR, OneCycleLR ... or a "
                                 "torch.optim.lr_scheduler class path",
              "early_stopping": "EarlyStopping or a class path of a subclass of it",
              "trainer.logger": "a logger class such as TensorBoardLogger, true or false",
              "data": "ImageDataModule, or the class path of an importable LightningDataModule that sets num_classes "
                      "and input_shape"}
_BASES = {"model.net": "an nn.Module class", "data": "a LightningDataModule class"}


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


def init_settings(class_path: str) -> list[str]:
    """The constructor arguments of a class given by its import path (none if it cannot be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        # input_shape and num_classes come from the data module: not the user's to set
        return [p for p in inspect.signature(cls).parameters
                if p not in ("self", "args", "kwargs", "input_shape", "num_classes")]
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


def what_it_is(path: str) -> str:
    """``a function``, ``a class (Dataset)``, ``an int``: what an import path names."""
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except Exception:
        return "not importable"
    if inspect.isclass(found):
        return "a class"
    if inspect.isfunction(found) or inspect.isbuiltin(found):
        return "a function"
    return f"a{'n' if type(found).__name__[0] in 'aeiou' else ''} {type(found).__name__}"


def import_problem(class_path: str) -> str:
    """Why a class path does not import, in a parenthesis: the module that failed with its own
    error line and how to make it importable, or the names the module has instead."""
    module, _, name = class_path.rpartition(".")
    try:
        found = importlib.import_module(module)
    except Exception as err:  # the user's module: any error of its own stops the import
        first = first_line(err, type(err).__name__)
        return (f" (importing {module} failed: {type(err).__name__}: {first}; the module must be importable: run "
                f"from the folder that holds it with PYTHONPATH=. or pip install -e your package)")
    if not hasattr(found, name):
        close = difflib.get_close_matches(name, [n for n in dir(found) if not n.startswith("_")], n=3)
        return f" ({module} has no {name}" + (f"; did you mean {', '.join(close)}?" if close else "") + ")"
    return ""


def constructor_error(message: str) -> str:
    """A constructor's own message out of jsonargparse's union report around it (a callback in a list)."""
    text = " ".join(str(message).split())
    if "Does not validate against any of the Union subtypes" not in text:
        return text
    inner = re.search(r"Errors: - (.*?) - (?:Not a valid subclass|Expected a|Problem with)", text)
    return inner.group(1) if inner else one_line_parse_error(text)


def _short(class_path: str) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def class_name(cls) -> str:
    """A class (or its import path) as its user knows it: the project's, torch's and Lightning's by
    short name (ConvNet, Adam, EarlyStopping), a user's by its full path (my_pkg.nets.RGBOnly), so
    two classes of one name in two modules are told apart."""
    path = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    return _short(path) if path.startswith(("project.", "torch.", "lightning.")) else path


def _plain_key(key: str) -> str:
    return key.replace(".init_args", "").replace(".class_path", "")


def given_value(key: str, argv: list[str] | None) -> str | None:
    """The value the user gave for a setting, as they wrote it: the last flag that sets it
    (``--key=v`` or ``--key v``, with or without ``init_args``), else the last config file or inline
    config of ``argv`` that does (a file's ``class_path`` is its section's value). None if none does."""
    import yaml

    argv, wanted = list(argv or []), _plain_key(key)
    found = None
    for i, arg in enumerate(argv):
        name, eq, value = arg.lstrip("-").partition("=")
        if not arg.startswith("--"):
            continue
        if name in ("config", "c") and (value or i + 1 < len(argv)):
            text = value if eq else argv[i + 1]
            try:
                content = yaml.safe_load(text if text.lstrip().startswith("{") else open(text).read())
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue
            for path, leaf in _leaves(content):
                if _plain_key(path) == wanted:
                    found = leaf
        elif _plain_key(name) == wanted:
            found = value if eq else (argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "")
    if found is None or isinstance(found, str):
        return found
    if isinstance(found, (bool, type(None))):
        return {True: "true", False: "false", None: "null"}[found]
    return yaml.safe_dump(found, default_flow_style=True).strip() if isinstance(found, (list, dict)) else str(found)


def _leaves(content, prefix: str = ""):
    """(dotted key, value) of every setting of a YAML mapping; a section's class_path is the section's."""
    if not isinstance(content, dict):
        if prefix:
            yield prefix, content
        return
    for k, v in content.items():
        yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
        if k == "class_path":
            yield prefix, v


def one_line_parse_error(message: str, known_keys: list[str] | None = None, argv: list[str] | None = None) -> str:
    """jsonargparse's nested, multi-line message as ``<setting>=<value> <why>; allowed: <what>``."""
    text = " ".join(str(message).split())
    # a flag, or a key of a config file, that no setting has
    unknown = re.match(r"unrecognized arguments: (\S+)", text) or re.match(
        r"(?:Option|Subcommand '\w+' does not accept option) '([^']+)'", text)
    if unknown:
        flag = unknown.group(1)
        key, _, value = flag.lstrip("-").partition("=")
        if not value:
            value = given_value(key, argv) or "?"
        close = difflib.get_close_matches(key, known_keys or [], n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{key}={value} is not a setting{hint}; allowed: the keys `project fit --print_config` shows"
    command = re.search(r"argument subcommand: invalid choice: '([^']*)' \(choose from (.*?)\)", text)
    if command:
        return f"subcommand={command.group(1)} is not known; allowed: {command.group(2).replace(chr(39), '')}"
    keys = [k for k in re.findall(r'Parser key "([^"]+)"', text)]
    key = ".".join(dict.fromkeys(keys))
    last = text.rfind(f'Parser key "{keys[-1]}"') if keys else 0
    tail = text[last:]
    required = re.search(r"the following arguments are required: ([\w, ]+?)(?: - |$|\.)", tail)
    owner = re.search(r"class_path='([\w.]+)'", tail) or re.search(r"given class_path '([\w.]+)'", tail)
    if required:
        names = [n.strip() for n in required.group(1).split(",")]
        owner_name = f" by {class_name(owner.group(1))}" if owner else ""
        return (f"{key}.{names[0]}=null is missing: it is required{owner_name}; allowed: a value, "
                f"e.g. --{key}.{names[0]}=...")
    nested = re.search(r"Option '([^']+)' is not accepted", tail)
    if key and nested:  # a config file's key that the class does not have
        option, settings = nested.group(1), init_settings(owner.group(1)) if owner else []
        close = difflib.get_close_matches(option, settings, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        given = given_value(f"{key}.{option}", argv) or "?"
        return (f"{key}.{option}={given} is not a setting of {class_name(owner.group(1)) if owner else key}{hint}; "
                f"allowed: {', '.join(settings) or 'see --help'}")
    value = None
    for pattern in (r"Expected a path but (\S+) either", r"Got value: (.+?)(?:\. Got value:| - Expected|$)",
                    r"Given value: (.+?)(?:\. Got value:| - Expected|$)"):
        found = re.search(pattern, tail)
        if found:
            value = found.group(1).rstrip(".")
            break
    if not key:
        return f"argument={text} is not valid; allowed: see --help"
    if value and value.startswith("Namespace("):  # a class's setting: jsonargparse shows the whole class
        inner = re.search(rf"{re.escape(key.rsplit('.', 1)[-1])}=(.+?)\)+$", value)
        value = inner.group(1).strip("'") if inner else None
    if value is None:  # jsonargparse's message lost it: what the flags or config files say
        value = given_value(key, argv)
    why = ""
    inner = re.search(r"Problem with given class_path '[\w.]+': (.*?)(?: - Expected|$)", tail)
    if inner and "Parser key" not in inner.group(1):
        why = f" ({inner.group(1)})"
    allowed = _allowed_from(tail)
    if key in CLASS_KEYS and value and "." in value and (not why or "has no attribute" in why):
        why = import_problem(value.strip("'\"")) or why
    if key in _BASES and value and "." in value and not why:
        kind = what_it_is(value)
        why = f" ({value} is {kind}, not {_BASES[key]})" if kind != "not importable" else ""
        if kind == "a function":
            why = f" ({value} is a function: name the class it builds, whose settings are then flags)"
    if key in CLASS_KEYS:
        allowed = allowed.replace(_CLASS_WORDS, CLASS_KEYS[key]) if _CLASS_WORDS in allowed else CLASS_KEYS[key]
        if value and "." not in value:
            allowed = f"{allowed} ('{value}' is no such class)"
    else:  # a number typed Union[float, Tensor] also "expects" an import path: not what a user means
        allowed = allowed.replace(f" or {_CLASS_WORDS}", "").replace(_CLASS_WORDS, "see --help")
    return f"{key}={shown(value) if value is not None else '?'} is not valid{why}; allowed: {allowed}"
