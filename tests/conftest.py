"""Shared fixtures: a tiny data module and a quick CPU Trainer, everything under tmp_path."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer

from project.data import ImageDataModule

torch.set_num_threads(2)


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
