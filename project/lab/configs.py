"""A study's runs as configurations: each run's flags, every experiment parsed before any run starts
(a typo costs seconds, not a study), the key that says whether a finished run is still current,
and what the page says of the baseline.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
from dataclasses import dataclass, field
from pathlib import Path

from project.errors import SettingError, fail, from_line
from project.lab import experiments
from project.lab.experiments import DEFAULT, Baseline, folder
from project.run.cli import DEFAULT_CONFIG, ProjectCLI
from project.run.hparams import flatten_settings

# What the page shows of a baseline: the settings that decide what is trained and measured.
SHOWN = ("model/", "data/", "penalty/", "trainer/max_epochs", "early_stopping", "test_ckpt")


def seed_args(seed: int, vary: str, data_seed: bool = True) -> list[str]:
    """``both``: the seed sets the initialization and the data (split, training subset, augmentation
    stream); ``init`` or ``data``: only that one, the other stays at seed 0. A data module of the
    user's own without a ``seed`` setting (``data_seed`` false) gets the initialization's seed only."""
    return [f"--seed_everything={seed if vary in ('both', 'init') else 0}",
            *([f"--data.seed={seed if vary in ('both', 'data') else 0}"] if data_seed else [])]


def run_args(name: str, seed: int, vary: str, runs_dir: Path, extra: list[str], data_seed: bool = True,
             baseline: Baseline = DEFAULT, root: Path | None = None) -> list[str]:
    return ["fit", *experiments.args(name, baseline, root, extra), *seed_args(seed, vary, data_seed),
            f"--trainer.logger.init_args.save_dir={runs_dir}", f"--trainer.logger.init_args.name={folder(name)}",
            f"--trainer.logger.init_args.version=seed_{seed}", "--trainer.enable_model_summary=false",
            "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0"]  # (the dry run checked it)


@dataclass(frozen=True)
class RunArgs:
    """The flags of a study's run: ``RunArgs(...)(experiment, seed)`` (a class, so a worker process gets it).
    A run that tests its last weights writes no checkpoint: a study reruns a stopped run from its
    start, so they would only cost time (7% of a lab run); one that tests its best checkpoint keeps
    them. Where nothing chooses by validation during training (no early stopping, no best
    checkpoint, no plateau schedule), a run validates every ``val_every`` epochs (3 of the lab's 30,
    the last included): validation draws no random numbers, so the weights, the tested figures and
    the last validation are the every-epoch run's; the curves have a point every 3 epochs (a run 12%
    faster)."""
    vary: str
    runs_dir: Path
    extra: list[str]
    seeded: dict[str, bool]
    baseline: Baseline = DEFAULT
    root: Path = field(default_factory=Path.cwd)
    tests_best: dict[str, bool] = field(default_factory=dict)
    val_every: dict[str, int] = field(default_factory=dict)

    def __call__(self, experiment: str, seed: int) -> list[str]:
        args = run_args(experiment, seed, self.vary, self.runs_dir, self.extra, self.seeded[experiment],
                        self.baseline, self.root)
        if not self.tests_best.get(experiment, True):
            args.append("--trainer.enable_checkpointing=false")
        if self.val_every.get(experiment, 1) > 1 and not any("check_val_every_n_epoch" in a for a in self.extra):
            args.append(f"--trainer.check_val_every_n_epoch={self.val_every[experiment]}")
        return args


@dataclass
class Parsed:
    """What parsing every experiment found: each one's configuration key, the data sets, whether each
    data module takes a seed, the baseline's own settings (flattened, as the hparams tab names them),
    and whether each tests its best checkpoint."""
    keys: dict[str, str]
    datasets: list[str]
    seeded: dict[str, bool]
    baseline: dict
    tests_best: dict[str, bool] = field(default_factory=dict)
    val_every: dict[str, int] = field(default_factory=dict)


def validation_interval(config) -> int:
    """Epochs between validations a run may take without changing what it trains or tests: 3 (or 2)
    where it divides the run's epochs and nothing chooses by validation during training; else 1."""
    scheduler = str((config.get("model") or {}).get("scheduler") or "")
    epochs = config["trainer"].get("max_epochs")
    if (config.get("early_stopping") is not None or config.get("test_ckpt", "best") != "last"
            or "Plateau" in scheduler or config["trainer"].get("check_val_every_n_epoch", 1) != 1
            or not (isinstance(epochs, int) and epochs > 0)):
        return 1
    return next(k for k in (3, 2, 1) if epochs % k == 0)


def _parse(name: str, extra: list[str], vary: str, baseline: Baseline, root: Path) -> ProjectCLI:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return ProjectCLI(args=run_args(name, 0, vary, Path("unused"), extra, False, baseline, root)[1:],
                              run=False)  # parse, no fit
    except SystemExit:
        error = from_line(stderr.getvalue().strip().splitlines()[-1])
        where = f"experiment {name}" + ("" if baseline.is_default else f" on the baseline {baseline.source}")
        raise SettingError(error.setting, f"{error.value} in {where}", error.allowed, error.why) from None


def check_configs(names: list[str], extra: list[str], vary: str, read_data: bool = True,
                  baseline: Baseline = DEFAULT, root: Path | None = None) -> Parsed:
    """Parse every experiment's config before any run starts.

    Each experiment's configuration key is a hash of its fully resolved configuration (every config
    file and flag applied, every default filled in), so a changed file or flag re-runs it. With
    ``read_data`` each experiment's data is read too, so a size that does not fit stops here.
    """
    root = root or Path.cwd()
    keys, datasets, seeded, own, best, every = {}, set(), {}, {}, {}, {}
    for name in dict.fromkeys(["baseline", *names]):  # the baseline first: its own mistakes are named as its
        cli = _parse(name, extra, vary, baseline, root)
        if name == "baseline":
            own = settings_of(cli)
            if name not in names:
                continue
        if read_data and hasattr(cli.datamodule, "train_batches"):  # a data set that does not fit stops here
            try:
                cli.datamodule.setup()
            except SettingError as err:
                raise SettingError(err.setting, err.value, err.allowed, f"{err.why} in experiment {name}") from None
        resolved = cli.parser.dump(cli.config, skip_none=False, skip_check=True)
        keys[name] = hashlib.sha256(f"{resolved}\nvary={vary}".encode()).hexdigest()[:16]
        datasets.add(getattr(cli.datamodule, "hparams", {}).get("dataset") or type(cli.datamodule).__name__)
        seeded[name] = "seed" in inspect.signature(type(cli.datamodule)).parameters
        best[name] = cli.config.get("test_ckpt", "best") == "best"
        every[name] = validation_interval(cli.config)
        if vary == "data" and not seeded[name]:
            fail("--vary", vary, "both or init", f"needs a data.seed setting, which {type(cli.datamodule).__name__} "
                 f"(experiment {name}) does not have")
    return Parsed(keys, sorted(datasets), seeded, own, best, every)


def settings_of(cli: ProjectCLI) -> dict:
    """A parsed run's settings that decide what it trains and measures, flattened."""
    config = cli.parser.dump(cli.config, skip_none=False, skip_check=True, format="parser_mode")
    import yaml

    flat = flatten_settings(yaml.safe_load(config) if isinstance(config, str) else config)
    return {k: v for k, v in flat.items() if k.startswith(SHOWN) and "/help" not in k}


def describe(baseline: Baseline, resolved: dict) -> dict:
    """What the page says of the baseline: its source, the settings its files set, and the settings
    of configs/default.yaml it keeps because it does not set them (those still in force in the
    resolved run: a class the baseline changes drops its former settings)."""
    import yaml

    own: dict = {}
    for path in baseline.files:
        own |= flatten_settings(yaml.safe_load(Path(path).read_text()) or {})
    if baseline.inline:
        own |= flatten_settings(yaml.safe_load(baseline.inline))
    own = {k: v for k, v in own.items() if k.startswith(SHOWN)}
    default = flatten_settings(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    # A network class of its own starts from its own defaults (project.run.net_settings): none of the
    # default ConvNet's settings reach it, whatever values the two share. Other classes (an optimizer)
    # keep the settings their new class also names: those are listed.
    fresh = "model/net/" if "model/net" in own and own["model/net"] != default.get("model/net") else None
    carried = {k: v for k, v in default.items() if k not in own and k in resolved and resolved[k] == v
               and not (fresh and k.startswith(fresh))}
    return {"source": baseline.source, "settings": own, "carried": carried}


def varied_settings(names: list[str], vary: str, root: Path | None = None) -> list[str]:
    """The hparams keys the study varies: each experiment's own settings, and the seed."""
    keys = {"data/seed"} if vary in ("both", "data") else set()
    for name in names:
        for part in experiments.parts(name):  # a setting as named; a file's model, data and penalty settings
            own = experiments.own_settings(part, root)
            keys |= set(own) if "=" in part else {k for k in own if k.startswith(("model", "data", "penalty"))}
    return sorted(keys)
