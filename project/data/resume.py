"""What a data module keeps in a checkpoint for an exact resume, each DDP rank its own: the
augmentation stream (as it stood before a batch augmented but not trained), where a cut epoch stood
(the sampler's seed and the batches trained), and, streaming, the loader's position. The training
loader Lightning makes after the restore continues from there: mid-epoch, at the batch after the
last one trained."""

from __future__ import annotations

import warnings

from project.devices import gathered, own_rank


def state_of(dm) -> dict:
    """The checkpoint's share of ``dm`` (an ImageDataModule), gathered from every rank."""
    gen = dm.augmentation.generator
    own = gen.get_state() if gen is not None else None
    trainer = dm.trainer
    progress = trainer.fit_loop.epoch_loop.batch_progress.current if trainer is not None else None
    if progress is not None and trainer.training and progress.ready > progress.completed:
        own = getattr(dm, "_augment_before", own)  # stopped with a batch augmented but not trained
    state = {"augment_rng": gathered(own)}
    sampler = getattr(dm, "_train_sampler", None)
    if progress is not None and sampler is not None and not dm.hparams.stream:  # where a cut epoch stood
        state["epoch_order"] = gathered({"seed": getattr(sampler, "seed", None), "trained": progress.completed,
                                         "batches": trainer.num_training_batches})
    if dm.hparams.stream:
        loader = getattr(dm, "_train_loader", None)
        state["stream_position"] = gathered(loader.state_dict() if loader is not None else None)
    return state


def restore(dm, state: dict) -> None:
    """This rank's share of a checkpoint's ``state`` into ``dm``, for the loaders made next."""
    saved = state.get("augment_rng")
    dm._augment_state = own_rank(saved, "augmentation stream") if isinstance(saved, list) else saved
    dm.augmentation.generator = None
    positions = state.get("stream_position") if dm.hparams.stream else None
    dm._stream_position = own_rank(positions, "streaming position") if positions else None
    order = own_rank(state["epoch_order"], "epoch order") if state.get("epoch_order") else None
    cut = order is not None and 0 < order["trained"] < order["batches"]
    dm._cut_epoch = order if cut and not dm.hparams.stream else None
    if dm._cut_epoch is not None:  # Lightning's warning does not know the sampler continues the epoch
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
