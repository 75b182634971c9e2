"""What an experiment of a study is: the config files and flags one run gets on top of the baseline.

An experiment is one part or several joined by ``+``, each applied in turn on the baseline:

    dropout                                   a file of configs/experiment/ by name
    model.net.init_args.drop_rate=0.5         one setting of the baseline changed
    mine/dropout.yaml                         a config file (relative to the claims file that names it)
    opt_sgd+model.optimizer.init_args.lr=0.01 both: a point of a tuned arm's learning-rate grid

``baseline`` alone is the baseline itself. The baseline is ``configs/experiment/baseline.yaml``, or
the one a claims file names (``baseline:``, a config file beside it or inline settings), or
``--baseline FILE``. A run's flags are the baseline's, then the study's own flags (``--`` ...), then
the experiment's parts: a setting the experiment changes is checked against the network and data
the baseline and those flags chose.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from project.errors import fail
from project.run.cli import CONFIG_DIR

EXPERIMENT_DIR = CONFIG_DIR / "experiment"
BASELINE = "baseline"
# "+" joins parts; a "+" inside a number (1e+3) does not
_JOIN = re.compile(r"\+(?=[A-Za-z_./~])")


def available() -> list[str]:
    """The experiments of configs/experiment/, by name."""
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Baseline:
    """The study's baseline: config files and inline settings applied first to every run, flags that
    place its relative folders, and how the page names it (``source``)."""
    files: tuple[str, ...] = (str(EXPERIMENT_DIR / "baseline.yaml"),)
    inline: str | None = None  # a JSON mapping of settings, as --config takes it
    source: str = "configs/experiment/baseline.yaml"
    flags: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.inline is None and self.files == Baseline.files

    def args(self) -> list[str]:
        return ([a for f in self.files for a in ("--config", f)] + (["--config", self.inline] if self.inline else [])
                + list(self.flags))


PLACED = ("data_dir", "stream_dir")  # the data's folder settings, relative to the file that sets them


def placed(path: Path, content: dict) -> tuple[str, ...]:
    """A baseline file's relative data folders as flags with their place: relative to the file, so a
    study runs from any working directory (``data_dir: digits`` beside the claims file)."""
    data = content.get("data") if isinstance(content, dict) else None
    settings = (data.get("init_args") or {}) if isinstance(data, dict) and "class_path" in data else data or {}
    return tuple(f"--data.{key}={(path.parent / value).resolve()}" for key, value in settings.items()
                 if key in PLACED and isinstance(value, str) and not Path(value).expanduser().is_absolute())


DEFAULT = Baseline()


def parts(name: str) -> list[str]:
    return [p.strip() for p in _JOIN.split(name)]


def is_file_part(part: str) -> bool:
    return part.endswith((".yaml", ".yml"))


def check(name: str, where: str, root: Path, allowed_by: str = "") -> None:
    """Each part of ``name`` names something that exists: one line before any run otherwise."""
    allowed = (f"a name of configs/experiment/ ({', '.join(available())}), a setting=value of the baseline, a config "
               f"file (.yaml, relative to {allowed_by or 'the working directory'}), or several joined by +")
    if not name.strip():
        fail(where, name, allowed, "is empty")
    for part in parts(name):
        if "=" in part:
            setting, _, _ = part.partition("=")
            if not setting.strip() or setting.startswith("-") or " " in setting.strip():
                fail(where, name, allowed, f"has a setting without a name ({part!r})")
        elif is_file_part(part):
            check_config_file(where, resolve(part, root), name)
        elif part != BASELINE and part not in available():
            fail(where, name, allowed, f"names {part!r}, which is not an experiment" if part != name else
                 "is not an experiment")


def check_config_file(where: str, path: Path, value: str | None = None) -> None:
    """A readable YAML mapping of settings (the project's config files are; a list or a plain text is not)."""
    import yaml

    value = value or str(path)
    if not path.is_file():
        fail(where, value, "a config file that exists", f"is not a file ({path})")
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        fail(where, value, "a readable YAML config file", f"cannot be read ({' '.join(str(err).split())[:200]})")
    if not isinstance(content, dict):
        what = "is empty" if content is None else f"holds a YAML {type(content).__name__}, not a mapping of settings"
        fail(where, value, "a config file of settings such as 'model: {net: ...}'", f"{what} ({path})")


def resolve(part: str, root: Path) -> Path:
    path = Path(part).expanduser()
    return path if path.is_absolute() else root / path


def args(name: str, baseline: Baseline = DEFAULT, root: Path | None = None, extra: list[str] = ()) -> list[str]:
    """The config flags of one experiment: the baseline's, the study's ``extra`` flags, then each part's."""
    out = [*baseline.args(), *extra]
    for part in parts(name):
        if "=" in part:
            out.append(f"--{part}")
        elif is_file_part(part):
            out += ["--config", str(resolve(part, root or Path.cwd()))]
        elif part != BASELINE:
            out += ["--config", str(EXPERIMENT_DIR / f"{part}.yaml")]
    return out


def folder(name: str) -> str:
    """A run folder's name for the experiment (a file part's folders joined by _, no path separators)."""
    return name.replace("/", "_").replace("\\", "_") or "_"


def own_settings(name: str, root: Path | None = None) -> dict:
    """What an experiment's parts set, as the hparams tab names them (``model/net/dropout``: 0.5)."""
    import yaml

    from project.run.hparams import flatten_settings

    settings: dict = {}
    for part in parts(name):
        if "=" in part:
            key, _, value = part.partition("=")
            settings[key.replace(".init_args", "").replace(".", "/")] = yaml.safe_load(value)
        elif part != BASELINE:
            path = resolve(part, root or Path.cwd()) if is_file_part(part) else EXPERIMENT_DIR / f"{part}.yaml"
            settings |= flatten_settings(yaml.safe_load(path.read_text()) or {})
    return settings


def inline_baseline(settings: dict) -> str:
    """Inline baseline settings as --config takes them (a JSON mapping)."""
    return json.dumps(settings, sort_keys=True)
