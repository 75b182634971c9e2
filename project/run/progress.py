"""What the terminal shows: a line per epoch (or Rich's bar on a terminal), why fit stopped, and
Lightning kept quiet.

``quiet_lightning`` is the one place Lightning's log output is turned down: its advertisements always,
its info lines for the runs of a study (compare, search), and ``held_lightning_logs`` holds its
start-up lines until every setting has been checked, so a bad setting's line is the only line.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from project.model.classifier import CLEAN_ACC, GAP, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS

# What both progress bars show of an epoch, in this order.
SHOWN = (TRAIN_LOSS, TRAIN_ACC, CLEAN_ACC, VAL_LOSS, VAL_ACC, GAP)
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
# Where Lightning logs its notes and "`Trainer.fit` stopped: ..." (rank_zero_info), and its checkpoint notes.
# Its "Received SIGTERM" and "Detected KeyboardInterrupt" lines too: the project's own stop line says it.
_NOTE_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.checkpoint_connector",
                 "lightning.pytorch.trainer.connectors.signal_connector")


class _Noise(logging.Filter):
    """Lightning's advertisement and notes that say nothing about the run."""

    NOISE = ("💡 Tip:", "`weights_only` was not set", "Detected KeyboardInterrupt")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage().strip()
        return (not message.startswith(self.NOISE) and "Received SIGTERM" not in message
                and ".lr_find_" not in message)  # the finder's own checkpoint


def quiet_lightning(level: int | None = None) -> None:
    """Drop Lightning's noise; with ``level`` (logging.WARNING for the runs of a study), its info lines too."""
    for name in _NOTE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Noise) for f in logger.filters):
            logger.addFilter(_Noise())
    if level is not None:
        for name in LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def held_lightning_logs():
    """Lightning's info lines logged inside are printed at the end, or dropped if an error stops the run."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
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


class _StopLine(logging.Filter):
    """Holds back Lightning's "`Trainer.fit` stopped: ..." so the bar prints it after the last
    epoch's line, not before it (Lightning logs it before the bar has printed that epoch)."""

    def __init__(self):
        super().__init__()
        self.held: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("`Trainer.fit` stopped"):
            self.held = record.getMessage()
            return False
        return True


class _StopMessage:
    """Both bars: hold Lightning's stop line during fit, then say why fit stopped."""

    def _hold_stop_line(self) -> None:
        self._stop_line = _StopLine()
        logging.getLogger(_NOTE_LOGGERS[0]).addFilter(self._stop_line)

    def _stop_message(self, trainer: Trainer) -> str | None:
        """Why fit stopped, from the trainer's state (the logged line may be filtered by a log level):
        early stopping's reason, max_steps or max_epochs reached, or Lightning's held line."""
        line = getattr(self, "_stop_line", None)
        logging.getLogger(_NOTE_LOGGERS[0]).removeFilter(line)
        stopper = trainer.early_stopping_callback
        if stopper is not None and stopper.stopped_epoch:
            return (f"`Trainer.fit` stopped: early stopping, {stopper.monitor} did not improve for "
                    f"{stopper.patience} epochs (after epoch {stopper.stopped_epoch + 1})")
        if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
            return f"`Trainer.fit` stopped: `max_steps={trainer.max_steps}` reached."
        if trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs:
            return f"`Trainer.fit` stopped: `max_epochs={trainer.max_epochs}` reached."
        return line.held if line is not None else None


def epoch_metrics(trainer: Trainer) -> str:
    metrics = trainer.callback_metrics
    return "  ".join(f"{k} {float(metrics[k]):.4f}" for k in SHOWN if k in metrics)


class PlainProgressBar(_StopMessage, ProgressBar):
    """One line per epoch, for logs that are not a terminal (CI, files, SLURM output)."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._pending: int | None = None  # an epoch that ended in this process, its line not printed yet

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    # Lightning computes the epoch's train metrics and the module's gap/acc after the callbacks'
    # on_train_epoch_end, so epoch k's line is printed when epoch k + 1 starts, or training ends.
    # A resumed run prints only the epochs it trains itself.
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._hold_stop_line()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._pending = trainer.current_epoch + 1

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer)
        message = self._stop_message(trainer)
        if message and self._enabled and trainer.is_global_zero:
            print(message, flush=True)

    def _flush(self, trainer: Trainer) -> None:
        if self._pending is not None:
            self._print(trainer, self._pending)
            self._pending = None

    def _print(self, trainer: Trainer, epochs_done: int) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        print(f"epoch {epochs_done}/{trainer.max_epochs}  {epoch_metrics(trainer)}", file=sys.stdout, flush=True)


class EpochRichProgressBar(_StopMessage, RichProgressBar):
    """Lightning's rich bar, counting epochs from 1 like the plain lines, showing the same metrics
    and printing why fit stopped on a line of its own after the bar."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            description += f"/{self.trainer.max_epochs}"
        return f"{description:{len(self.validation_description)}}"

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        metrics = trainer.callback_metrics
        return {k: float(metrics[k]) for k in SHOWN if k in metrics}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._hold_stop_line()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_progress()
        message = self._stop_message(trainer)
        if message and trainer.is_global_zero:
            print(message, flush=True)
