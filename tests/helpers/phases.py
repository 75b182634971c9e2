"""Pauses a run at one phase so a test can signal it there: each pause writes PHASE_DIR/<phase>
and waits up to 20 s, until Lightning has seen a SIGTERM, or until the test writes PHASE_DIR/go."""

import os
import time
from pathlib import Path

from lightning.pytorch import Callback

from project.data.datamodule import ImageDataModule


def pause(phase: str, trainer=None) -> None:
    if os.environ.get("PAUSE_AT") != phase:
        return
    folder = Path(os.environ["PHASE_DIR"])
    (folder / phase).touch()
    deadline = time.time() + 20
    while time.time() < deadline and not getattr(trainer, "received_sigterm", False) and not (folder / "go").exists():
        time.sleep(0.05)


class SlowData(ImageDataModule):
    """The project's data module, paused while it reads the data (phase "loading")."""

    def setup(self, stage=None):
        pause("loading")
        super().setup(stage)


class Pause(Callback):
    """Pauses in the sanity check ("sanity"), in training ("training") and in the test after fit ("test")."""

    def on_sanity_check_start(self, trainer, pl_module):
        pause("sanity", trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1:
            pause("training", trainer)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        pause("test", trainer)


class StopAfter(Callback):
    """Stops fit cleanly after STOP_AFTER epochs (last.ckpt saved), as a run cut short at an epoch's end."""

    def on_train_epoch_end(self, trainer, pl_module):
        if os.environ.get("STOP_AFTER") and trainer.current_epoch + 1 >= int(os.environ["STOP_AFTER"]):
            trainer.should_stop = True


class InterruptAt(Callback):
    """Ctrl-C at batch INTERRUPT_BATCH of epoch INTERRUPT_EPOCH (a run stopped mid-epoch)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (os.environ.get("INTERRUPT_EPOCH") and trainer.current_epoch == int(os.environ["INTERRUPT_EPOCH"])
                and batch_idx == int(os.environ["INTERRUPT_BATCH"])):
            raise KeyboardInterrupt
