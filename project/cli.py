"""The command line: Lightning's CLI with our default config, linked arguments and a run summary.

``project fit`` trains and then tests the best checkpoint; ``validate``, ``test`` and ``predict``
are Lightning's own. Every setting of the model, data module, trainer and callbacks is a flag or a
YAML key (``project fit --print_config`` shows them all).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import EarlyStopping, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from project.callbacks import WeightPenalty
from project.checkpoints import CheckpointError, check_matches, read_checkpoint, resolve_checkpoint
from project.data import DataError, ImageDataModule
from project.diagnosis import Diagnosis
from project.model import ImageClassifier
from project.monitor import PlainProgressBar

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class OneLineErrorParser(LightningArgumentParser):
    """Reports a bad setting as one line (``error: ...``) without the page-long usage first."""

    def print_usage(self, file=None) -> None:
        pass

    def error(self, message: str, ex: Exception | None = None):
        super().error(" ".join(str(message).split()), ex)


class ProjectCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("parser_class", OneLineErrorParser)
        defaults = {"default_config_files": [str(DEFAULT_CONFIG)]} if DEFAULT_CONFIG.exists() else {}
        kwargs.setdefault("parser_kwargs", {cmd: defaults for cmd in ("fit", "validate", "test", "predict")}
                          if kwargs.get("run", True) else defaults)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self._started = time.perf_counter()
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

    def before_instantiate_classes(self) -> None:
        self._checkpoint = None
        config = self.config.get(self.subcommand) if self.subcommand else None
        if not config:
            return
        _fall_back_to_fp16(config.trainer)
        # --ckpt_path last (or a path in a run folder) continues that run in its own folder.
        if not config.get("ckpt_path"):
            return
        logger = config.trainer.get("logger")
        init = logger.get("init_args") if hasattr(logger, "get") else None
        save_dir, name = (init.get("save_dir", "logs"), init.get("name", "default")) if init else ("logs", "default")
        try:
            path, run_folder = resolve_checkpoint(config.ckpt_path, save_dir, name)
            self._checkpoint = (path, read_checkpoint(path))
        except CheckpointError as err:
            _stop(err)
        config.ckpt_path = str(path)
        if self.subcommand == "fit" and run_folder and init is not None:
            init.version = run_folder

    def instantiate_classes(self) -> None:
        # Constructors validate their settings; a bad value stops here, before any data is read
        # or any log folder is made, with one line and argparse's exit code.
        try:
            super().instantiate_classes()
            if self._checkpoint:
                check_matches(self._checkpoint[1], self.model, self._checkpoint[0])
            if self.subcommand == "fit":
                _check_run_length(self.model, self.trainer)
        except (ValueError, TypeError, MisconfigurationException, ImportError) as err:
            _stop(err)  # ImportError: an accelerator or precision whose package is missing

    def before_fit(self) -> None:
        for logger in self.trainer.loggers:
            _check_writable(Path(logger.save_dir or "."))

    def _instantiate_trainer(self, config: dict, callbacks: list):
        callbacks = [c for c in callbacks if c is not None]  # early_stopping: null
        # Rich's live bar on a terminal; one plain line per epoch in CI logs and files.
        has_bar = any(isinstance(c, ProgressBar) for c in [*callbacks, *(config.get("callbacks") or [])])
        if config.get("enable_progress_bar", True) is not False and not has_bar:
            callbacks = [*callbacks, RichProgressBar() if sys.stdout.isatty() else PlainProgressBar()]
        trainer = super()._instantiate_trainer(config, callbacks)
        # Callbacks run in list order: the penalty adds its gradient before the gradient monitors
        # (histograms, grad norms) look, so they show what the optimizer applies.
        trainer.callbacks.sort(key=lambda c: not isinstance(c, WeightPenalty))
        return trainer

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
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=tested, verbose=False)
        self.test_metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("test/")}
        self.fit_metrics = {**fit_metrics, **self.test_metrics}  # the run's last logged values
        self.tested_metrics = weights
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks
        if self.trainer.is_global_zero:
            print(run_summary(self.trainer, self.model, log_dir, weights, self.test_metrics, best, tested,
                              time.perf_counter() - self._started), flush=True)


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


def _fall_back_to_fp16(trainer) -> None:
    """bf16-mixed on a CUDA GPU without bf16 (before Ampere) becomes 16-mixed, with a gradient scaler."""
    import torch

    if (str(trainer.get("precision")) == "bf16-mixed" and trainer.get("accelerator") in ("gpu", "cuda", "auto")
            and torch.cuda.is_available() and not torch.cuda.is_bf16_supported()):
        print("note: this GPU has no bf16; using precision 16-mixed instead", file=sys.stderr)
        trainer.precision = "16-mixed"


def _stop(err: BaseException) -> None:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


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
        f"logs                {log_dir}",
        f"best checkpoint     {best_checkpoint or 'none'}",
    ]
    if "train/acc_clean" in weights and "val/acc" in weights:
        diagnosis = Diagnosis(weights["train/acc_clean"], weights["val/acc"], model.hparams.human_accuracy,
                              model.hparams.diagnosis_tolerance)
        lines += ["", "Diagnosis (bias and variance of the tested weights)", *diagnosis.lines()]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    try:
        ProjectCLI(args=args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
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
