"""Checkpoints that survive interruptions: atomic writes, the random state, resume resolution.

A run killed while writing must not leave a half-written ``last.ckpt`` that a later
``--ckpt_path last`` would load; a resumed run must draw the same random numbers the
uninterrupted run would have drawn; ``--ckpt_path last`` must continue in the run's own folder.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read or used with this model."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside its target, syncs it, then renames it.

    The rename is atomic, so a full disk or a kill mid-write leaves the previous checkpoint whole
    and no partial file under the real name.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


class RandomState(Callback):
    """Saves torch's, numpy's and Python's random states in checkpoints and restores them on resume.

    Lightning restores weights, optimizer, schedulers, loops and callbacks, but not the global
    random generators: without them a resumed run shuffles and drops out differently from the
    run it continues.
    """

    def state_dict(self) -> dict:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": [kind, keys.tolist(), position, has_gauss, gauss]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(_as_tuples(state["python"]))
        kind, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class CheckpointOnInterrupt(Callback):
    """On SIGTERM or Ctrl-C, saves the state of the moment as ``interrupted.ckpt``.

    ``last.ckpt`` stays the end of the last finished epoch, the point an exact resume starts
    from (``--ckpt_path last``); ``interrupted.ckpt`` keeps the partial epoch and can be resumed
    explicitly (``--ckpt_path .../interrupted.ckpt``), continuing mid-epoch.
    """

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        folder = getattr(trainer.checkpoint_callback, "dirpath", None)
        if folder:
            trainer.save_checkpoint(Path(folder) / "interrupted.ckpt")


def _version_number(folder: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", folder.name)
    return int(match.group(1)) if match else -1


def resolve_checkpoint(ckpt_path: str, save_dir: str, name: str) -> tuple[Path, str | None]:
    """The checkpoint to load and, when it lies in a run folder of this logger, that folder's name.

    ``last`` means ``last.ckpt`` of the newest ``<save_dir>/<name>/version_N/checkpoints/``.
    """
    runs = Path(save_dir) / name
    if ckpt_path == "last":
        found = sorted(runs.glob("version_*/checkpoints/last.ckpt"), key=lambda p: _version_number(p.parents[1]))
        if not found:
            raise CheckpointError(f"ckpt_path=last: no run to resume, no version_*/checkpoints/last.ckpt under {runs}")
        path = found[-1]
    else:
        path = Path(ckpt_path)
        if not path.is_file():
            raise CheckpointError(f"ckpt_path={ckpt_path}: no such file")
    run_folder = path.resolve().parents[1]
    same_logger = path.parent.name == "checkpoints" and run_folder.parent == runs.resolve()
    return path, run_folder.name if same_logger else None


def read_checkpoint(path: Path) -> dict:
    """Loads a checkpoint safely (``weights_only``: no code from the file runs) and checks it is ours."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated, corrupt or not a safe PyTorch "
                              f"checkpoint): {str(err).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint of this project")
    return checkpoint


def check_matches(checkpoint: dict, model: torch.nn.Module, path: Path) -> None:
    """A clear error when the checkpoint's weights do not fit the configured model."""
    saved, wanted = set(checkpoint["state_dict"]), set(model.state_dict())
    if saved != wanted:
        missing, unexpected = sorted(wanted - saved)[:3], sorted(saved - wanted)[:3]
        raise CheckpointError(
            f"checkpoint {path} was saved by a different model (missing {missing}, unexpected {unexpected}); "
            "use the --model settings of the run that saved it")
    for key, value in checkpoint["state_dict"].items():
        if value.shape != model.state_dict()[key].shape:
            raise CheckpointError(f"checkpoint {path} was saved by a different model: {key} has shape "
                                  f"{tuple(value.shape)}, the model wants {tuple(model.state_dict()[key].shape)}")
