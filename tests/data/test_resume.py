"""What a data module keeps in a checkpoint (project/data/resume.py): restored into a fresh data
module, the augmentation stream goes on exactly where it stood (the cut epoch's order is
tests/run/test_checkpoints.py's bit-identical resume)."""

import torch

from project.data import resume
from project.data.datamodule import ImageDataModule


def _augmented(dm: ImageDataModule) -> torch.Tensor:
    return dm.prepare(dm.train_set.head(8), augment=True)


def test_a_restored_augmentation_stream_draws_what_the_saved_one_would_have():
    dm = ImageDataModule(augment=["hflip", {"name": "random_crop", "padding": 2}], seed=3)
    dm.setup()
    _augmented(dm)  # the stream has moved on from its seed
    state = resume.state_of(dm)
    assert set(state) == {"augment_rng"}  # no trainer: no cut epoch to record
    expected = _augmented(dm)
    fresh = ImageDataModule(augment=["hflip", {"name": "random_crop", "padding": 2}], seed=3)
    fresh.setup()
    resume.restore(fresh, state)
    assert fresh._cut_epoch is None and fresh._stream_position is None
    assert torch.equal(_augmented(fresh), expected)
    again = ImageDataModule(augment=["hflip", {"name": "random_crop", "padding": 2}], seed=3)
    again.setup()
    assert not torch.equal(_augmented(again), expected)  # without the state: the stream from its seed
