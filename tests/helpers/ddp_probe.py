"""A callback the DDP tests add from the command line: each rank saves what it ended with."""

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback


class SaveRankState(Callback):
    def on_train_end(self, trainer, pl_module):
        folder = Path(os.environ["PROBE_DIR"])
        generator = trainer.datamodule.augmentation.generator
        torch.save({"state_dict": pl_module.state_dict(), "augment_seed": generator.initial_seed(),
                    "train_batches": trainer.num_training_batches},
                   folder / f"rank{trainer.global_rank}.pt")
