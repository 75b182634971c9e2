"""The benchmark's data rows (project/bench/data.py). Rows 6a-6c themselves run in the quick
benchmark (tests/bench/test_training.py); each measures in fresh processes, a minute here, so this
file checks what they compare: the same split in memory and streamed."""

import torch

from project.bench import data as bench_data


def test_streamed_and_in_memory_data_hold_the_same_split(tmp_path):
    memory, streamed = (bench_data.streamed_data(300, 32, tmp_path, stream) for stream in (False, True))
    assert memory.input_shape == streamed.input_shape == bench_data.SHAPE
    for part in ("train_set", "val_set", "test_set"):
        a, b = getattr(memory, part), getattr(streamed, part)
        # the same images; the streamed training chunks are written in a seeded random order
        assert len(a) == len(b) > 0 and torch.equal(torch.bincount(torch.as_tensor(a.labels)), torch.bincount(torch.as_tensor(b.labels)))
