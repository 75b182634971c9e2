"""The command line: Lightning's CLI with our default config, linked arguments and a run summary.

``project fit`` trains and then tests the best checkpoint; ``validate``, ``test`` and ``predict``
are Lightning's own. Every setting of the model, data module, trainer and callbacks is a flag or a
YAML key (``project fit --print_config`` shows them all).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import logging.handlers
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Literal

import torch
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from project.callbacks import NonFiniteLossError, WeightPenalty
from project.checks import (MAX_SEED, SettingError, check_config_files, check_settings, constructor_error, fail,
                            one_line_parse_error)
from project.checkpoints import (CheckpointError, CheckpointOnInterrupt, CheckpointWriteError, check_matches,
                                 read_checkpoint, resolve_checkpoint)
from project.data import DataError, ImageDataModule
from project.diagnosis import Diagnosis
from project.model import ImageClassifier, machine_memory, network_settings
from project.monitor import EpochRichProgressBar, HParams, PlainProgressBar, QuietLightning, flatten_settings

RANDOM_SEED_ENV = "PROJECT_RANDOM_SEED"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class OneLineErrorParser(LightningArgumentParser):
    """Reports a bad setting as one line (``error: <setting>=<value> ...; allowed: ...``), without
    jsonargparse's usage, tip and nested union report, and exits with argparse's code 2."""

    def print_usage(self, file=None) -> None:
        pass

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # a parse inside a parse: the outer one reports
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        known = [k.lstrip("-") for k in parser._option_string_actions]
        _stop(one_line_parse_error(message, known))


class ProjectCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("parser_class", OneLineErrorParser)
        # The model has its own optimizer and scheduler keys; Lightning's top-level --optimizer and
        # --lr_scheduler would replace them with only a warning.
        kwargs.setdefault("auto_configure_optimizers", False)
        # PL_FIT__TRAINER__MAX_EPOCHS=5 is --trainer.max_epochs=5 for `project fit`.
        defaults = {"default_env": True}
        if DEFAULT_CONFIG.exists():
            defaults["default_config_files"] = [str(DEFAULT_CONFIG)]
        kwargs.setdefault("parser_kwargs", {"default_env": True, **{cmd: defaults for cmd in ("fit", "validate", "test",
                                                                                              "predict")}}
                          if kwargs.get("run", True) else defaults)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self._started = time.perf_counter()
        self._checkpoint = None
        self.random_seed: int | None = None
        QuietLightning.install()
        super().__init__(ImageClassifier, ImageDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, test and print the run summary")
        parser.add_argument("--test_ckpt", type=Literal["best", "last"], default="best",
                            help="test the best checkpoint (by val/loss) or the weights training ended with")
        # The two callbacks experiments change most get their own keys: --penalty.l2=1e-3,
        # --early_stopping.patience=3, or early_stopping: null to train for all max_epochs.
        parser.add_lightning_class_args(EarlyStopping, "early_stopping", subclass_mode=True, required=False)
        parser.add_lightning_class_args(WeightPenalty, "penalty")
        # The model learns the data's shape and classes; the user never repeats them.
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Every --ckpt_path (a file or ``last``, in fit/validate/test/predict) is read safely and
        checked here, before anything runs. Lightning's own version loads the file unchecked and
        lets the checkpoint's model settings silently replace the user's flags."""
        self._checkpoint = None
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else None
        if not config or not config.get("ckpt_path"):
            return
        save_dir, name, _ = _logger_settings(config)
        try:
            path, run_folder = resolve_checkpoint(config.ckpt_path, save_dir, name)
            checkpoint = read_checkpoint(path)
        except CheckpointError as err:
            _stop(err)
        defaults = self._subcommand_parsers[subcommand].get_defaults()
        conflicts = checkpoint_conflicts(checkpoint, _as_dict(config), _as_dict(defaults))
        if conflicts:
            _stop(f"--ckpt_path {path} was saved with other settings: {'; '.join(conflicts)}; "
                  "drop these flags or use a checkpoint saved with them")
        hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if k in MODEL_KEYS}
        if hparams:  # the checkpoint's network where the user set none (it cannot load into another)
            configured = _as_dict(config.get("model", {})).get("net")
            if configured != json.loads(json.dumps(hparams.get("net"), default=str)):
                def short(net) -> str:
                    return str(net.get("class_path", net)).rsplit(".", 1)[-1] if isinstance(net, dict) else str(net)
                print(f"note: model.net is the checkpoint's {short(hparams.get('net'))} with its saved settings, "
                      f"not the configured {short(configured)}", file=sys.stderr, flush=True)
            try:
                self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
            except SystemExit:
                _stop(f"--ckpt_path {path}: its model settings {hparams} cannot be read by this version")
        self.config[subcommand].ckpt_path = str(path)
        self._checkpoint = (path, checkpoint, run_folder)

    def _set_seed(self) -> None:
        """Every setting is checked first; then the seed is set without Lightning's "Seed set to"
        line, so a bad setting's error is the only line printed. ``seed_everything: true`` draws a
        random seed (Lightning's would be 0), shared with the DDP processes this one starts, and
        recorded in the config that is saved with the run."""
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        try:
            check_settings(config, self.subcommand)
        except SettingError as err:
            _stop(err)
        seed = config.get("seed_everything")
        if seed is False:
            return
        if seed is True:
            # "<pid>:<seed>": the DDP processes that process started use the seed it drew.
            parent, _, drawn = os.environ.get(RANDOM_SEED_ENV, "").partition(":")
            seed = int(drawn) if parent == str(os.getppid()) else random.SystemRandom().randint(0, MAX_SEED)
            os.environ[RANDOM_SEED_ENV] = f"{os.getpid()}:{seed}"
            self.random_seed = seed
        config["seed_everything"] = seed_everything(seed, workers=True, verbose=False)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else None
        if not config:
            return
        _fall_back_to_fp16(config.trainer)
        _, name, init = _logger_settings(config)
        path, checkpoint, run_folder = self._checkpoint or (None, None, None)
        if self.subcommand == "fit":
            if checkpoint is not None:
                _stop_if_finished(checkpoint, config.trainer, path)
                print(f"resuming from {path} (after {_epochs_done(checkpoint)} epochs, step "
                      f"{checkpoint.get('global_step', 0)})", file=sys.stderr, flush=True)
            # --ckpt_path last (or a path in a run folder of this logger) continues that run in its own folder.
            save_dir, _, _ = _logger_settings(config)
            if run_folder and init is not None and run_folder.parent.resolve() == (Path(save_dir) / name).resolve():
                init.version = run_folder.name
        elif init is not None:
            # validate/test/predict write beside the run they evaluate (version_N/<subcommand>/), or
            # under <name>-<subcommand>/, never as a new run folder of fit's.
            if run_folder:
                init.save_dir, init.name = str(run_folder.parent.parent), run_folder.parent.name
                init.version = f"{run_folder.name}/{self.subcommand}"
            else:
                init.name = f"{name}-{self.subcommand}"

    def instantiate_classes(self) -> None:
        # Constructors validate their settings; a bad value stops here, before any data is read
        # or any log folder is made, with one line and argparse's exit code.
        # Lightning's start-up lines (GPU available ...) are held back until every check passed.
        with held_lightning_logs():
            try:
                super().instantiate_classes()
                if self._checkpoint:
                    check_matches(self._checkpoint[1], self.model, self._checkpoint[0])
                if self.subcommand == "fit":
                    _check_run_length(self.model, self.trainer)
                _check_batch_norm_batches(self.model, self.datamodule)
                if self.subcommand is not None:
                    _check_memory(self.model, self.datamodule, self.trainer)
                    # The data is read and checked here, before any log folder exists.
                    self.datamodule.setup()
                    if self.subcommand == "fit":
                        _check_with_data(self.model, self.datamodule, self.trainer)
            except DataError as err:
                _stop(err)
            except ImportError as err:  # an accelerator, strategy or precision whose package is missing
                config = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
                _stop(f"trainer.accelerator={config.get('accelerator')}, trainer.strategy={config.get('strategy')}, "
                      f"trainer.precision={config.get('precision')}: a package it needs is missing ({err}); "
                      "allowed: auto, cpu or gpu, or install that package")
            except (ValueError, TypeError, MisconfigurationException) as err:
                _stop(constructor_error(str(err)))
        if self.subcommand is not None:
            for callback in self.trainer.callbacks:
                if isinstance(callback, HParams):
                    callback.defaults = self._default_settings()
        if self.random_seed is not None and self.trainer.is_global_zero:
            print(f"seed_everything: true drew seed {self.random_seed} (saved in the run's config.yaml; "
                  f"--seed_everything={self.random_seed} repeats it)", file=sys.stderr, flush=True)

    def _default_settings(self) -> dict[str, object]:
        """The default configuration in the hparams tab's terms: what a run changed from it is listed first."""
        defaults = _as_dict(self._subcommand_parsers[self.subcommand].get_defaults())
        trainer, penalty = defaults.get("trainer") or {}, defaults.get("penalty") or {}
        return flatten_settings({
            "model": defaults.get("model") or {}, "data": defaults.get("data") or {},
            "penalty": {k: penalty.get(k) for k in ("l1", "l2")},
            "trainer": {"precision": str(trainer.get("precision")), "max_epochs": trainer.get("max_epochs"),
                        "accumulate_grad_batches": trainer.get("accumulate_grad_batches")}})

    def before_fit(self) -> None:
        for logger in self.trainer.loggers:
            _check_writable(Path(logger.save_dir or "."))

    def _instantiate_trainer(self, config: dict, callbacks: list):
        callbacks = [c for c in callbacks if c is not None]  # early_stopping: null
        if config.get("enable_checkpointing") is False:  # the default config's checkpoint callbacks step aside
            config["callbacks"] = [c for c in config.get("callbacks") or [] if not isinstance(c, Checkpoint)]
        # Rich's live bar on a terminal; one plain line per epoch in CI logs and files.
        has_bar = any(isinstance(c, ProgressBar) for c in [*callbacks, *(config.get("callbacks") or [])])
        if config.get("enable_progress_bar", True) is not False and not has_bar:
            callbacks = [*callbacks, EpochRichProgressBar() if sys.stdout.isatty() else PlainProgressBar()]
        trainer = super()._instantiate_trainer(config, callbacks)
        # Callbacks run in list order: the penalty adds its gradient before the gradient monitors
        # (histograms, grad norms) look, so they show what the optimizer applies.
        trainer.callbacks.sort(key=lambda c: not isinstance(c, WeightPenalty))
        return trainer

    def after_predict(self) -> None:
        _after_predict(self)

    def after_fit(self) -> None:
        config = self.config_init[self.subcommand]
        if not config.get("test_after_fit", True):
            return
        fit_metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        best = getattr(self.trainer.checkpoint_callback, "best_model_path", "") or None
        tested = best if config.get("test_ckpt", "best") == "best" else None
        # The figures of the weights that are tested: the best checkpoint's own (saved with it), or
        # the final epoch's.
        weights = _checkpoint_metrics(tested) if tested else {"epoch": self.trainer.current_epoch, **fit_metrics}
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=tested, verbose=False, weights_only=True)
        self.test_metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("test/")}
        self.fit_metrics = {**fit_metrics, **self.test_metrics}  # the run's last logged values
        self.tested_metrics = weights
        # A collective under DDP: every rank asks. Without a logger nothing is written (Lightning's
        # log_dir would then be the working directory).
        log_dir = self.trainer.log_dir if self.trainer.loggers else None
        if self.trainer.is_global_zero:
            if log_dir:
                _write_json(Path(log_dir) / "summary.json", {
                    "tested": "best" if tested else "last", "tested_checkpoint": tested, "best_checkpoint": best,
                    "epochs": self.trainer.current_epoch, "tested_weights": weights, "test": self.test_metrics,
                    "seconds": time.perf_counter() - self._started})
            print(run_summary(self.trainer, self.model, log_dir, weights, self.test_metrics, best, tested,
                              time.perf_counter() - self._started), flush=True)


def write_predictions(path: Path, probabilities: torch.Tensor, labels: torch.Tensor, names: list[str]) -> None:
    """One CSV row per sample: its index in the split, true and predicted class, each class's probability."""
    predicted = probabilities.argmax(dim=1)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "true_label", "true_name", "predicted_label", "predicted_name",
                         *(f"p_{name}" for name in names)])
        for i, (row, label, guess) in enumerate(zip(probabilities.tolist(), labels.tolist(), predicted.tolist())):
            writer.writerow([i, label, names[label], guess, names[guess], *(f"{v:.6f}" for v in row)])
    os.replace(partial, path)


def _write_json(path: Path, content: dict) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(content, indent=1))
    os.replace(partial, path)


# The model settings a checkpoint's weights depend on; the rest (optimizer, schedule, warm-up ...)
# only changes training and may differ on resume. The data settings that change what the inputs are.
MODEL_KEYS = ("net",)
DATA_KEYS = ("dataset", "normalize", "fake_shape", "fake_classes")


def _as_dict(namespace) -> dict:
    return json.loads(json.dumps(namespace.as_dict() if hasattr(namespace, "as_dict") else namespace, default=str))


def _flatten(value, prefix: str) -> dict:
    if isinstance(value, dict):
        return {k: v for key, inner in value.items() for k, v in _flatten(inner, f"{prefix}.{key}").items()}
    return {prefix: value}


def checkpoint_conflicts(checkpoint: dict, config: dict, defaults: dict) -> list[str]:
    """Each setting the user gave (it differs from the default) that the checkpoint saved otherwise."""
    saved = json.loads(json.dumps({
        "model": {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if k in MODEL_KEYS},
        "data": {k: v for k, v in checkpoint.get("datamodule_hyper_parameters", {}).items() if k in DATA_KEYS}},
        default=str))
    saved, given, default = _flatten(saved, "-"), _flatten(config, "-"), _flatten(defaults, "-")
    return [f"{key[2:]}={given[key]!r} here, {value!r} in the checkpoint" for key, value in saved.items()
            if key in given and given[key] != default.get(key) and given[key] != value]


def _logger_settings(config) -> tuple[str, str, object]:
    logger = config.trainer.get("logger")
    init = logger.get("init_args") if hasattr(logger, "get") else None
    if init is None:
        return "logs", "default", None
    return init.get("save_dir", "logs"), init.get("name", "default"), init


def _epochs_done(checkpoint: dict) -> int:
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    return int(progress.get("processed", checkpoint.get("epoch", 0)))


def _stop_if_finished(checkpoint: dict, trainer, path: Path) -> None:
    """Resuming a run that already reached its end trains nothing: say so and exit 0."""
    done, steps = _epochs_done(checkpoint), int(checkpoint.get("global_step", 0))
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps") or -1
    if (max_epochs is not None and max_epochs >= 0 and done >= max_epochs) or (0 < max_steps <= steps):
        limit = f"trainer.max_steps={max_steps}" if 0 < max_steps <= steps else f"trainer.max_epochs={max_epochs}"
        print(f"{path} has already finished {done} epochs ({steps} steps) of {limit}: nothing to train; "
              f"raise {limit.split('=')[0]} to train on", flush=True)
        sys.exit(0)


def _checkpoint_metrics(path: str) -> dict[str, float]:
    checkpoint = read_checkpoint(Path(path))
    return {"epoch": checkpoint.get("epoch", -1) + 1, **checkpoint.get("metrics", {})}


def _check_run_length(model: ImageClassifier, trainer) -> None:
    """A schedule that takes the run's length needs a run with one."""
    if model.needs_run_length and trainer.max_epochs == -1 and trainer.max_steps == -1:
        raise ValueError(
            f"trainer.max_epochs=-1 (train until stopped) leaves model.scheduler "
            f"({model.hparams.scheduler.get('class_path', model.hparams.scheduler) if isinstance(model.hparams.scheduler, dict) else model.hparams.scheduler}) "
            "without a length; allowed: a positive trainer.max_epochs or trainer.max_steps, or the scheduler's "
            "own length (T_max, total_steps, total_iters)")


def _after_predict(cli: "ProjectCLI") -> None:
    predictions = cli.trainer.predict_loop.predictions
    if not cli.trainer.is_global_zero or not predictions or not cli.trainer.loggers or cli.trainer.log_dir is None:
        return
    dm = cli.datamodule
    folder = Path(cli.trainer.log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"predictions_{dm.hparams.predict_split}.csv"
    write_predictions(path, torch.cat([p.float().cpu() for p in predictions]), dm.predict_set.labels, dm.class_names)
    print(f"predictions for the {len(dm.predict_set)} {dm.hparams.predict_split} images written to {path}", flush=True)


def _fall_back_to_fp16(trainer) -> None:
    """bf16-mixed on a CUDA GPU without bf16 (before Ampere) becomes 16-mixed, with a gradient scaler."""
    import torch

    if (str(trainer.get("precision")) == "bf16-mixed" and trainer.get("accelerator") in ("gpu", "cuda", "auto")
            and torch.cuda.is_available() and not torch.cuda.is_bf16_supported()):
        print("note: this GPU has no bf16; using precision 16-mixed instead", file=sys.stderr)
        trainer.precision = "16-mixed"


def _stop(err: BaseException | str, code: int = 2) -> None:
    """One line on stderr, argparse's exit code 2 for a bad setting or data (1 for a failed run)."""
    print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
    sys.exit(code)


@contextlib.contextmanager
def held_lightning_logs():
    """Lightning's info lines logged inside are printed at the end, or dropped if an error stops the run."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    held = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
    saved = [(logger, logger.handlers[:], logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers, logger.propagate = [held], False
    ok = False
    try:
        yield
        ok = True
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
        if ok:
            for record in held.buffer:
                logging.getLogger(record.name).handle(record)


def _check_batch_norm_batches(model, datamodule) -> None:
    """Batch norm needs two samples in a training batch to have batch statistics."""
    if datamodule is None or datamodule.hparams.batch_size > 1:
        return
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        fail("data.batch_size", 1, "an integer >= 2 with norm=batch, or another model.net.norm",
             "leaves batch norm without batch statistics")


def _check_memory(model, datamodule, trainer) -> None:
    """A network and batch size that cannot fit in memory stop here, not with an allocation error mid-epoch."""
    if model.memory is None or datamodule is None:
        return
    device = trainer.strategy.root_device
    available, where = machine_memory(), "this machine's memory"
    if device.type == "cuda":
        available, where = torch.cuda.get_device_properties(device).total_memory, f"the GPU's memory ({device})"
    hp = datamodule.hparams
    for setting, batch, needed in (("data.batch_size", hp.batch_size, model.memory.training(hp.batch_size)),
                                   ("data.eval_batch_size", hp.eval_batch_size,
                                    model.memory.evaluation(hp.eval_batch_size))):
        if needed > available:
            fail(setting, batch, f"a batch size or network that fits in {where}, {available / 2**30:.1f} GiB",
                 f"with model.net={network_settings(model.hparams.get('net'))} needs about "
                 f"{needed / 2**30:.1f} GiB")


def _check_with_data(model, datamodule, trainer) -> None:
    """The settings that depend on the data's size, checked once it is read."""
    batches = datamodule.train_batches(trainer.world_size)
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif limit is not None:
        batches = max(1, int(batches * limit))
    interval = trainer.val_check_interval
    if isinstance(interval, int) and interval > batches and trainer.check_val_every_n_epoch is not None:
        fail("trainer.val_check_interval", interval, f"a number of batches <= {batches} (an epoch's training "
             "batches) or a fraction in (0, 1]", "is longer than an epoch")
    try:
        model.check_schedule(*model.run_length(trainer, batches))
    except ValueError as err:
        raise SettingError(str(err)) from None


def _check_writable(folder: Path) -> None:
    """Fail before training when the logs cannot be written, not at the first checkpoint."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        _stop(f"cannot write logs and checkpoints to {folder}: {err.strerror or err}")


def run_summary(trainer, model, log_dir: str | None, weights: dict, test: dict, best_checkpoint: str | None,
                tested: str | None, seconds: float) -> str:
    """What the run ended with: the tested weights' test, validation and clean training figures,
    and the bias/variance diagnosis of those same weights."""
    def value(metrics: dict, name: str) -> str:
        return f"{float(metrics[name]):.4f}" if name in metrics else "n/a"

    which = "best checkpoint (by val/loss)" if tested else "last weights"
    lines = [
        "", "Run summary", "-----------",
        f"tested weights      {which}, after epoch {weights.get('epoch', '?')}",
        f"test accuracy       {value(test, 'test/acc')}",
        f"test loss           {value(test, 'test/loss')}",
        f"val accuracy        {value(weights, 'val/acc')}   (the tested weights)",
        f"clean train acc     {value(weights, 'train/acc_clean')}   (the tested weights, eval mode, no augmentation)",
        f"best val accuracy   {value(weights, 'val/acc_best')}   (any epoch up to then)",
        f"epochs run          {trainer.current_epoch}",
        f"wall time           {seconds:.1f} s",
        f"logs                {log_dir or 'none (no logger, or fast_dev_run)'}",
        f"best checkpoint     {best_checkpoint or 'none'}",
    ]
    if "train/acc_clean" in weights and "val/acc" in weights:
        diagnosis = Diagnosis(weights["train/acc_clean"], weights["val/acc"], model.hparams.human_accuracy,
                              model.hparams.diagnosis_tolerance)
        lines += ["", "Diagnosis (bias and variance of the tested weights)", *diagnosis.lines()]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    CheckpointOnInterrupt.interrupted = None
    given = sys.argv[1:] if args is None else args
    if given[:1] == ["lr-find"]:
        from project import lr_find

        lr_find.main(given[1:])
        return
    try:
        check_config_files(given)
    except SettingError as err:
        _stop(err)
    try:
        ProjectCLI(args=args)
    except DataError as err:
        _stop(err)
    except (NonFiniteLossError, CheckpointWriteError) as err:
        _stop(err, code=1)  # the run failed; what it saved stays
    except (SystemExit, KeyboardInterrupt):
        stopped = CheckpointOnInterrupt.interrupted
        if stopped is None:
            raise
        signum, saved = stopped
        # Lightning exits 0 on SIGTERM and 1 on Ctrl-C; a stopped run must not look finished.
        resume = f"; resume with: project fit --ckpt_path {saved} (and the same config)" if saved else ""
        print(f"stopped by {signal.Signals(signum).name}; saved {saved or 'nothing'}{resume}", file=sys.stderr, flush=True)
        sys.exit(128 + signum)
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Lightning leaves the DDP process group open; left to interpreter exit, gloo's threads can
    abort the process ("terminate called without an active exception") after a finished run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
