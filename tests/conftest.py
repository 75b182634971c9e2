"""Shared fixtures: a tiny data module and a quick CPU Trainer, everything under tmp_path, and the
process-wide state every test starts from."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.optim.lr_scheduler import StepLR

from project.data.datamodule import ImageDataModule
from project.model.classifier import ImageClassifier

# One torch thread per test process (pytest -n 2 runs two), two when run alone.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    """What a test may change for the whole process is put back after it: Lightning's log levels and
    filters (studies quiet Lightning), the drawn-seed variable DDP children read, torch's global seed."""
    monkeypatch.delenv("PROJECT_RANDOM_SEED", raising=False)
    names = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
             "lightning.pytorch.trainer.connectors.checkpoint_connector")
    saved = [(logger, logger.level, logger.filters[:]) for logger in map(logging.getLogger, names)]
    rng = torch.get_rng_state()
    yield
    for logger, level, filters in saved:
        logger.setLevel(level)
        logger.filters[:] = filters
    torch.set_rng_state(rng)


@pytest.fixture
def in_tmp_path(tmp_path, monkeypatch):
    """The test runs in its own tmp_path: the logs/ and data/ a command makes, and the files the
    test writes, land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def digits() -> ImageDataModule:
    return ImageDataModule(dataset="digits", batch_size=32, augment=[])


@pytest.fixture
def make_trainer(tmp_path):
    """A Trainer on the CPU with no logger, progress bar or checkpoints unless asked for."""

    def make(**overrides) -> Trainer:
        settings = dict(accelerator="cpu", devices=1, max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
        settings.update(overrides)
        return Trainer(**settings)

    return make


@pytest.fixture
def tensorboard_run(tmp_path, make_trainer):
    """Fits and tests a small model with these callbacks and a TensorBoard logger; returns the
    run's events, the model and the data module."""

    def run(callbacks, epochs=2, batches=4):
        torch.manual_seed(0)
        model = ImageClassifier(optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                                scheduler=lambda o: StepLR(o, step_size=1, gamma=0.5))
        dm = ImageDataModule(batch_size=32)
        logger = TensorBoardLogger(tmp_path, name="run", default_hp_metric=False)
        trainer = make_trainer(max_epochs=epochs, limit_train_batches=batches, limit_val_batches=2, logger=logger,
                               log_every_n_steps=2, callbacks=callbacks, enable_autolog_hparams=False)
        trainer.fit(model, dm)
        trainer.test(model, dm, verbose=False)
        events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0})
        events.Reload()
        return events, model, dm

    return run
