"""Stopping a run of several processes with any signal: every rank stops after the same batch.

A scheduler stops a job with SIGTERM (SLURM's preemption, ``docker stop``, Kubernetes, systemd),
a person with ``kill <pid>`` or Ctrl-C, and the signal reaches one process of a DDP run (the one
that launched the others, or any rank) or all of them. Lightning 2.6's own SIGTERM handler, on the
rank that gets the signal, signals the processes it launched and then calls a collective broadcast
from inside the handler: run between the main thread's own collectives, that broadcast is matched
against another rank's gradient all-reduce, and the run hangs until gloo's timeout (30 minutes);
a signal to rank 1 alone stops rank 1 alone, and the others wait for it just as long.

Here the handler only notes the signal. At the start of every training batch the ranks all-reduce
what they noted (one 4-byte all-reduce a batch), so every rank knows at the same batch, and all of
them stop at the end of it; ``CheckpointOnInterrupt`` then saves ``interrupted.ckpt`` with every
rank present. An evaluation (the test after fit) is not cut: the ranks agree when it ends. One
process keeps Lightning's own handling (SIGTERM stops at the end of the batch, Ctrl-C at once).
``RunInterrupted`` is such a stop as the command line reports it.
"""

from __future__ import annotations

import signal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from project.devices import launched_by, register_peers

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _distributed(trainer: Trainer) -> bool:
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


class StopTogether(Callback):
    """Under DDP, SIGTERM and SIGINT on any rank stop every rank after the same training batch."""

    def __init__(self):
        self.signum: int | None = None  # the first stop signal this run noted, agreed by every rank

    def _note(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def _install(self, trainer: Trainer) -> None:
        # After Lightning registered its own handlers (it restores the ones before fit at teardown).
        if _distributed(trainer):
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._note)

    def _agreed(self, trainer: Trainer) -> int:
        """The largest signal number any rank noted (0: none); a collective every rank makes here."""
        noted = torch.tensor([int(self.signum or 0)], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(noted, op=torch.distributed.ReduceOp.MAX)
        return int(noted.item())

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install(trainer)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        register_peers()  # so a rank that loses a peer can name it (project/devices.py)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install(trainer)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install(trainer)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if not _distributed(trainer):
            return
        agreed = self._agreed(trainer)
        if agreed:
            self.signum = agreed
            trainer._signal_connector.received_sigterm = True  # Lightning stops after this batch, on every rank

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if _distributed(trainer):
            agreed = self._agreed(trainer)
            if agreed:
                self.signum = agreed
                raise SIGTERMException()


def restarted() -> str:
    """What restarted this job, where something did ('' otherwise): torchrun's --max-restarts after a
    worker failed, or SLURM's requeue (``scontrol requeue``, Lightning's answer to the preemption
    signal). Such a job resumes its run from the newest checkpoint by itself."""
    import os

    for variable, what in (("TORCHELASTIC_RESTART_COUNT", "torchrun restart"), ("SLURM_RESTART_COUNT", "SLURM requeue")):
        count = os.environ.get(variable, "0")
        if count.isdigit() and int(count) > 0:
            return f"{what} {count}"
    return ""


class RunInterrupted(Exception):
    """SIGTERM or Ctrl-C stopped the run; ``saved`` is the checkpoint it can resume from (or None);
    ``in_test``: training had finished and the test after fit was running."""

    def __init__(self, signum: int, saved: str | None, in_test: bool = False):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.saved, self.in_test = signum, saved, in_test

    def line(self) -> str:
        if self.in_test and self.saved:
            return (f"{self}; during the test after fit: training finished and is saved in {self.saved}; run the test "
                    f"with: project fit --ckpt_path {self.saved} (and the same config)")
        if self.saved:
            again = {"torchrun": f"the same torchrun command, with --ckpt_path {self.saved}",
                     "slurm": f"the same srun command, with --ckpt_path {self.saved}"}.get(
                launched_by(), f"project fit --ckpt_path {self.saved} (and the same config)")
            return f"{self}; saved {self.saved}; resume with: {again}"
        return f"{self} before training began; saved nothing; run the same command again"


def stop_on_sigterm(signum, frame) -> None:
    """SIGTERM outside Lightning's hands (start-up, reading the data, between fit and its test) stops
    the run as Ctrl-C does. Inside fit and test Lightning's own handler is in charge (it calls this
    one too): it stops at the next batch, and the run saves interrupted.ckpt."""
    if signal.getsignal(signal.SIGTERM) is stop_on_sigterm:
        raise RunInterrupted(signum, None)
