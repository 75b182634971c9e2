"""A callback the DDP tests add from the command line: each rank saves what it ended with."""

import os
import signal
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


class KillRank(Callback):
    """SIGKILLs rank KILL_RANK at the third batch of the second epoch: a peer lost mid-training."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 2 and trainer.global_rank == int(os.environ["KILL_RANK"]):
            os.kill(os.getpid(), signal.SIGKILL)


class KillOnce(Callback):
    """SIGKILLs rank 1 at the third batch of the third epoch, on the first attempt of a torchrun job
    only (TORCHELASTIC_RESTART_COUNT 0): a worker lost, which --max-restarts answers."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if first and trainer.current_epoch == 2 and batch_idx == 2 and trainer.global_rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
