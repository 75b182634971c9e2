"""Checkpoints that survive interruptions: atomic writes, the random state, and what a resume loads.

A run killed while writing must not leave a half-written ``last.ckpt`` that a later
``--ckpt_path last`` would load; a resumed run must draw the same random numbers the
uninterrupted run would have drawn; ``--ckpt_path last`` must continue in the run's own folder,
and a checkpoint saved with other model or data settings than the command line's is named.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from project.devices import gathered, own_rank
from project.errors import SettingError
from project.run.stopping import StopTogether


class CheckpointError(SettingError):
    """A checkpoint that cannot be found, read or used with this model."""

    def __init__(self, path, why: str, allowed: str = "a checkpoint of this project's fit, whole and readable"):
        super().__init__("ckpt_path", path, allowed, why)


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (full disk, unwritable folder); the previous one is whole."""


def write_atomically(path: Path, content: bytes | str, sync: bool = False) -> None:
    """Written whole or not at all: a temporary file beside the target, then an atomic rename, so a
    reader (or a resumed run) never sees half a file, and a failure leaves the previous file whole."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside its target, syncs it, then renames it.

    The rename is atomic, so a full disk or a kill mid-write leaves the previous checkpoint whole
    and no partial file under the real name.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for leftover in path.parent.glob(".*.partial"):  # from a run killed mid-write
                leftover.unlink(missing_ok=True)
            write_atomically(path, buffer.getvalue(), sync=True)
        except OSError as err:
            last = path.parent / LAST
            then = (f"after freeing space, --ckpt_path {last} resumes from its epoch {epochs_in(last)}" if last.is_file()
                    else "no earlier epoch was saved: after freeing space, run the same command again")
            raise CheckpointWriteError(
                f"trainer.logger.save_dir={path.parent} cannot hold checkpoint {path.name} ({err.strerror or err}); "
                f"the checkpoints already there are whole; {then}; allowed: a folder with free space that this user "
                "can write") from None


def epochs_in(path: Path) -> int | str:
    """The number of epochs a checkpoint finished (for a message; "?" when it cannot be read)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("epoch", -1) + 1
    except Exception:
        return "?"


class RandomState(Callback):
    """Saves torch's, numpy's and Python's random states in checkpoints and restores them on resume,
    each DDP rank its own (and its own CUDA device's).

    Lightning restores weights, optimizer, schedulers, loops and callbacks, but not the global
    random generators: without them a resumed run shuffles and drops out differently from the
    run it continues. Lightning writes rank 0's checkpoint only, so every rank's state is gathered
    into it; a rank the checkpoint has no state for (more processes now), and a CUDA state on a
    machine without CUDA, keep the freshly seeded streams, said in one note.

    A run resumed mid-epoch gets the states once more at its first batch: making the cut epoch's
    loader again (and the sanity check's) draws from torch's stream, which the uninterrupted run
    did before that batch, not at it.
    """

    _saved: dict | None = None
    _again: dict | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        mid_epoch = 0 < trainer.fit_loop.epoch_loop.batch_progress.current.completed < trainer.num_training_batches
        self._again, self._saved = (self._saved if mid_epoch else None), None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if self._again is not None:
            self._set(self._again)
            self._again = None

    def state_dict(self) -> dict:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": [kind, keys.tolist(), position, has_gauss, gauss]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()  # this rank's own device
        return {"ranks": gathered(state)}

    def load_state_dict(self, saved: dict) -> None:
        state = own_rank(saved["ranks"] if "ranks" in saved else [saved], "random state")
        if state is None:
            return
        self._saved = state
        self._set(state)

    @staticmethod
    def _set(state: dict) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(_as_tuples(state["python"]))
        kind, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
        if "cuda" in state and torch.cuda.is_available():
            cuda = state["cuda"]
            torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, list) else cuda)  # (older checkpoints: every GPU's)


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with ``{epoch}`` in file names counted from 1, as the run summary,
    the terminal and the resume lines count: ``epoch030-...ckpt`` holds the weights after epoch 30
    (Lightning's own name for them says 029). Its state keeps ModelCheckpoint's key, so checkpoints
    written with either resume with the other."""

    def format_checkpoint_name(self, metrics, filename=None, ver=None, prefix=None) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)


class LastCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` at the end of every training epoch and at the end of fit, whatever the
    monitored metric did: the point a resumed run continues from.

    Lightning 2.6's ``ModelCheckpoint(save_last=True)`` rewrites it only when a top-k checkpoint
    is saved, so it held the best epoch, not the last. As a ``Checkpoint`` this runs after early
    stopping and ModelCheckpoint at each epoch end, so their state in the file is the epoch's.
    """

    def __init__(self):
        self.last_model_path = ""
        self._saved_step = -1

    def _save(self, trainer: Trainer) -> None:
        folder = checkpoint_folder(trainer)
        if folder is None or trainer.sanity_checking or self._saved_step == trainer.global_step:
            return
        path = folder / LAST
        trainer.save_checkpoint(path)
        self.last_model_path, self._saved_step = str(path), trainer.global_step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer)  # a run stopped by max_steps mid-epoch

    def state_dict(self) -> dict:
        return {"last_model_path": self.last_model_path}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_model_path = state_dict.get("last_model_path", "")


LAST, INTERRUPTED = "last.ckpt", "interrupted.ckpt"


def last_saved(trainer: Trainer | None) -> str | None:
    """``<last.ckpt> after epoch N``, read from the callbacks (asking the trainer for its log folder
    is a collective, which a run that lost a process cannot make), or None."""
    last = next((Path(c.last_model_path) for c in getattr(trainer, "callbacks", [])
                 if isinstance(c, LastCheckpoint) and c.last_model_path), None)
    return f"{last} after epoch {epochs_in(last)}" if last and last.is_file() else None


def checkpoint_folder(trainer: Trainer) -> Path | None:
    """The run's checkpoint folder: ModelCheckpoint's, or <log_dir>/checkpoints."""
    folder = getattr(trainer.checkpoint_callback, "dirpath", None)
    if folder:
        return Path(folder)
    if trainer.loggers and trainer.log_dir:
        return Path(trainer.log_dir) / "checkpoints"
    return None


class CheckpointOnInterrupt(Callback):
    """On SIGTERM or Ctrl-C, saves the state of the moment as ``interrupted.ckpt``.

    ``last.ckpt`` stays the end of the last finished epoch; ``interrupted.ckpt`` keeps the partial
    epoch. ``--ckpt_path last`` resumes from whichever of the two is newer. ``interrupted`` records
    the signal and the file, so the command line can say so and exit with 128 + the signal number.
    """

    def __init__(self):
        self.interrupted: tuple[int, str | None] | None = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        agreed = next((c.signum for c in trainer.callbacks if isinstance(c, StopTogether) and c.signum), None)
        signum = agreed or (signal.SIGTERM if isinstance(exception, SIGTERMException) else signal.SIGINT)
        folder = checkpoint_folder(trainer) if trainer.checkpoint_callbacks else None  # enable_checkpointing: false
        path = None
        if folder is not None and trainer.state.fn == "fit":
            path = folder / INTERRUPTED
            loop = trainer.fit_loop.epoch_loop
            total = loop.batch_progress.total
            # Lightning adds one to the logging step when it resumes from a checkpoint saved with a
            # batch in hand, as if it had been saved before that batch's step (its own are, at
            # on_validation_end); this one is saved after it: one less, so TensorBoard's steps go on
            # from where they stood, not one further.
            in_hand = not (total.started == total.ready and total.processed == total.started == total.completed)
            loop._batches_that_stepped -= in_hand
            try:
                trainer.save_checkpoint(path)
            finally:
                loop._batches_that_stepped += in_hand
        self.interrupted = (int(signum), str(path) if path else None)


def _version_number(folder: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", folder.name)
    return int(match.group(1)) if match else -1


def resolve_checkpoint(ckpt_path: str, save_dir: str, name: str) -> tuple[Path, Path | None]:
    """The checkpoint to load and, when it lies in a run folder (``.../version_N/checkpoints/``), that folder.

    ``last`` means the newest resumable state of the newest ``<save_dir>/<name>/version_N/``:
    ``interrupted.ckpt`` when it is newer than ``last.ckpt`` (a run stopped mid-epoch, or before
    its first epoch ended), else ``last.ckpt``.
    """
    runs = Path(save_dir) / name
    if ckpt_path == "last":
        folders = sorted({p.parents[1] for pattern in (LAST, INTERRUPTED)
                          for p in runs.glob(f"version_*/checkpoints/{pattern}")}, key=_version_number)
        if not folders:
            raise CheckpointError("last", f"finds no run to resume: no version_*/checkpoints/{LAST} or "
                                  f"{INTERRUPTED} under {runs}", "last with a run of this logger's name, or a file")
        candidates = [p for p in (folders[-1] / "checkpoints" / n for n in (LAST, INTERRUPTED)) if p.is_file()]
        path = max(candidates, key=lambda p: p.stat().st_mtime_ns)
    else:
        path = Path(ckpt_path)
        if not path.is_file():
            raise CheckpointError(ckpt_path, "is no such file", "a checkpoint file, or last")
    run_folder = path.parents[1] if len(path.parents) > 1 else None
    in_a_run = path.parent.name == "checkpoints" and run_folder is not None and _version_number(run_folder) >= 0
    return path, run_folder if in_a_run else None


def read_checkpoint(path: Path) -> dict:
    """Loads a checkpoint safely (``weights_only``: no code from the file runs) and checks it is ours."""
    if path.stat().st_size == 0:
        raise CheckpointError(path, "is empty (0 bytes): a run killed before writing it, or a copy that failed")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(path, f"cannot be read (truncated, corrupt or not a safe PyTorch checkpoint): "
                              f"{reason}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
        raise CheckpointError(path, "is not a Lightning checkpoint of this project")
    for field in ("epoch", "global_step"):  # a hand-edited or foreign file: its training state cannot be trusted
        value = checkpoint.get(field, 0)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise CheckpointError(path, f"has {field}={value!r}, not a whole number >= 0: a hand-edited or foreign "
                                  "file, whose training state cannot be trusted")
    return checkpoint


def check_matches(checkpoint: dict, model: torch.nn.Module, path: Path) -> None:
    """A clear error when the checkpoint's weights do not fit the configured model."""
    saved, wanted = set(checkpoint["state_dict"]), set(model.state_dict())
    if saved != wanted:
        missing, unexpected = sorted(wanted - saved)[:3], sorted(saved - wanted)[:3]
        raise CheckpointError(path, f"was saved by a different model (missing {missing}, unexpected "
                              f"{unexpected})", "the --model settings of the run that saved it")
    for key, value in checkpoint["state_dict"].items():
        if value.shape != model.state_dict()[key].shape:
            raise CheckpointError(path, f"was saved by a different model: {key} has shape {tuple(value.shape)}, "
                                  f"the model wants {tuple(model.state_dict()[key].shape)}",
                                  "the --model settings of the run that saved it")


# --- what a resume loads ---------------------------------------------------------------------------

# The model settings a checkpoint's weights depend on; the rest (optimizer, schedule, warm-up ...)
# only changes training and may differ on resume. The data settings that change what the inputs are.
MODEL_KEYS = ("net",)
DATA_KEYS = ("dataset", "normalize", "fake_shape", "fake_classes")


@dataclass(frozen=True)
class Resume:
    """A checkpoint to load, read and checked, and the run folder it lies in (None: not in one)."""
    path: Path
    checkpoint: dict
    run_folder: Path | None

    @property
    def model_settings(self) -> dict:
        """The checkpoint's own network settings: the weights only load into that network."""
        return {k: v for k, v in self.checkpoint.get("hyper_parameters", {}).items() if k in MODEL_KEYS}

    @property
    def epochs_done(self) -> int:
        progress = self.checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        return int(progress.get("processed", self.checkpoint.get("epoch", 0)))

    def finished(self, max_epochs: int | None, max_steps: int | None) -> str | None:
        """What to say when the run already reached its end: resuming it would train nothing."""
        done, steps, max_steps = self.epochs_done, int(self.checkpoint.get("global_step", 0)), max_steps or -1
        if (max_epochs is not None and max_epochs >= 0 and done >= max_epochs) or (0 < max_steps <= steps):
            limit = f"trainer.max_steps={max_steps}" if 0 < max_steps <= steps else f"trainer.max_epochs={max_epochs}"
            return (f"{self.path} has already finished {done} epochs ({steps} steps) of {limit}: nothing to train; "
                    f"raise {limit.split('=')[0]} to train on")
        return None

    def conflicts(self, config: dict, defaults: dict) -> list[str]:
        """Each setting the user gave (it differs from the default) that the checkpoint saved otherwise."""
        saved = as_plain({"model": self.model_settings, "data": {
            k: v for k, v in self.checkpoint.get("datamodule_hyper_parameters", {}).items() if k in DATA_KEYS}})
        config, defaults = _data_settings(config), _data_settings(defaults)
        saved, given, default = _flatten(saved, "-"), _flatten(config, "-"), _flatten(defaults, "-")
        return [f"{key[2:]}={given[key]!r} here, {value!r} in the checkpoint" for key, value in saved.items()
                if key in given and given[key] != default.get(key) and given[key] != value]


def load_resume(ckpt_path: str, save_dir: str, name: str) -> Resume:
    """``--ckpt_path`` (a file, or ``last`` of the logger's runs) resolved, read safely and checked."""
    from project.run.paths import check_path

    check_path("ckpt_path", ckpt_path)
    path, run_folder = resolve_checkpoint(ckpt_path, save_dir, name)
    return Resume(path, read_checkpoint(path), run_folder)


def as_plain(value) -> dict:
    """A config namespace or dict as plain JSON values, so two configurations compare key by key."""
    return json.loads(json.dumps(value.as_dict() if hasattr(value, "as_dict") else value, default=str))


def _data_settings(config: dict) -> dict:
    """The data module's settings as its hyperparameters list them (its init_args, without class_path)."""
    data = config.get("data")
    return {**config, "data": data.get("init_args") or {}} if isinstance(data, dict) and "class_path" in data else config


def _flatten(value, prefix: str) -> dict:
    if isinstance(value, dict):
        return {k: v for key, inner in value.items() for k, v in _flatten(inner, f"{prefix}.{key}").items()}
    return {prefix: value}


def checkpoint_metrics(path: str) -> dict[str, float]:
    """The figures a checkpoint saved of its own epoch (ImageClassifier.on_save_checkpoint)."""
    checkpoint = read_checkpoint(Path(path))
    return {"epoch": checkpoint.get("epoch", -1) + 1, **checkpoint.get("metrics", {})}
