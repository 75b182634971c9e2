"""The default digits run, timed through its parts: seconds to 98% validation accuracy (through the
real CLI), what the monitoring callbacks cost an epoch, and what the clean training accuracy costs.
Each part is measured inside the same process in turns with its reference (best of each kept)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from unittest import mock

from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from project.data.datamodule import ImageDataModule
from project.model.callbacks import NonFiniteLossGuard, WeightPenalty
from project.model.classifier import ImageClassifier
from project.run.hparams import HParams
from project.run.monitor import GradientNorms, Histograms, Pictures, StepLearningRate


def monitoring_callbacks() -> list[Callback]:
    """The callbacks of configs/default.yaml that draw pictures and write TensorBoard data."""
    return [StepLearningRate(logging_interval="step"), WeightPenalty(), NonFiniteLossGuard(), Histograms(),
            GradientNorms(), Pictures(), HParams()]


class ReachedAccuracy(Callback):
    """Records the seconds from fit start until val/acc first reaches ``target``."""

    def __init__(self, target: float = 0.98):
        self.target, self.seconds, self._started = target, None, 0.0
        self.best, self.best_seconds = 0.0, None

    def on_fit_start(self, trainer, pl_module):
        self._started = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        accuracy, now = float(pl_module.val_acc.compute()), time.perf_counter() - self._started
        if self.seconds is None and accuracy >= self.target:
            self.seconds = now
        if accuracy > self.best:
            self.best, self.best_seconds = accuracy, now


def digits_time_to_accuracy(sizes, workdir: Path) -> dict:
    """The default config through the real CLI: seconds to 98% val accuracy, and the whole fit."""
    from project.run.cli import ProjectCLI

    started = time.perf_counter()
    # the bench's own flags (--quick) are not the CLI's: hide them so LightningCLI does not warn
    with mock.patch.object(sys, "argv", sys.argv[:1]):
        cli = ProjectCLI(args=["fit", f"--trainer.max_epochs={sizes.digits_epochs}",
                               "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                               f"--trainer.logger.init_args.save_dir={workdir}",
                               "--trainer.callbacks+=project.bench.digits.ReachedAccuracy", "--test_after_fit=false"])
    # by name: a module run as __main__ would hold a second class of the same name
    reached = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ReachedAccuracy")
    return {"seconds_to_target": reached.seconds, "fit_seconds": time.perf_counter() - started,
            "epochs": cli.trainer.current_epoch, "best": reached.best, "best_seconds": reached.best_seconds}


class ValidationTime(Callback):
    """Wall seconds of two parts of each validation: the clean training subset's batches (loader 1,
    from the end of the batch before: loader switch, fetch, forward, metrics), and the epoch's end
    (last batch to on_validation_end: the module's logging, where the clean metrics are logged)."""

    def __init__(self):
        self.clean_batches, self.epoch_end, self._last = 0.0, 0.0, 0.0

    def on_validation_epoch_start(self, trainer, pl_module):
        self._last = time.perf_counter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        now = time.perf_counter()
        if dataloader_idx == 1:
            self.clean_batches += now - self._last
        self._last = now

    def on_validation_end(self, trainer, pl_module):
        self.epoch_end += time.perf_counter() - self._last


def digits_validation_time(sizes, workdir: Path, clean_train: bool) -> tuple[float, ValidationTime]:
    """Seconds per epoch of the default digits run (with monitoring), and its validation timings."""
    from lightning.pytorch import seed_everything

    seed_everything(0, verbose=False)
    timer = ValidationTime()
    trainer = Trainer(accelerator="auto", devices="auto", max_epochs=sizes.digits_epochs, log_every_n_steps=10,
                      logger=TensorBoardLogger(workdir, name="digits"), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[*monitoring_callbacks(), timer], enable_autolog_hparams=False)
    started = time.perf_counter()
    trainer.fit(ImageClassifier(), ImageDataModule(clean_train_size=None if clean_train else 0))
    epochs = trainer.current_epoch
    timer.clean_batches, timer.epoch_end = timer.clean_batches / epochs, timer.epoch_end / epochs
    return (time.perf_counter() - started) / epochs, timer


def clean_eval_cost(sizes, workdir: Path) -> tuple[float, float]:
    """Seconds per epoch of the default run, and the part of it the clean training accuracy costs:
    its own batches (timed inside the run) plus the extra epoch-end logging (against a run without
    it); small parts timed in the same runs, so a busy neighbour does not decide the result."""
    runs_on, runs_off = [], []
    for _ in range(sizes.repeats):  # interleaved, best of each
        runs_on.append(digits_validation_time(sizes, workdir, True))
        runs_off.append(digits_validation_time(sizes, workdir, False))
    per_epoch = min(seconds for seconds, _ in runs_on)
    extra_logging = max(0.0, min(t.epoch_end for _, t in runs_on) - min(t.epoch_end for _, t in runs_off))
    return per_epoch, min(t.clean_batches for _, t in runs_on) + extra_logging


def monitoring_cost(sizes, workdir: Path) -> tuple[float, float]:
    """Seconds per epoch of the default digits run without and with the monitoring callbacks,
    measured in turns (at least three each, best of each kept: one run of each moved 0.87 to 0.93)."""
    digits_fit_seconds(sizes, workdir, monitoring=False)  # warm-up: first-run costs fall on neither side
    off, on = [], []
    for _ in range(max(3, sizes.repeats)):
        off.append(digits_fit_seconds(sizes, workdir, False))
        on.append(digits_fit_seconds(sizes, workdir, True))
    return min(off), min(on)


def digits_fit_seconds(sizes, workdir: Path, monitoring: bool) -> float:
    """Seconds per epoch of the default digits run, with or without the monitoring callbacks."""
    from lightning.pytorch import seed_everything

    seed_everything(0, verbose=False)
    callbacks = monitoring_callbacks() if monitoring else [WeightPenalty(), NonFiniteLossGuard()]
    trainer = Trainer(accelerator="auto", devices="auto", max_epochs=sizes.digits_epochs, log_every_n_steps=10,
                      logger=TensorBoardLogger(workdir, name="digits"), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                      enable_autolog_hparams=False)
    started = time.perf_counter()
    trainer.fit(ImageClassifier(), ImageDataModule())
    return (time.perf_counter() - started) / trainer.current_epoch
