"""The training/validation/test split, the splits in memory (TensorBatches: views of the loaded
images through their indices, and the samplers that shuffle them and continue a cut epoch) and
the normalization statistics, for data in memory and for streamed chunks alike (the same settings
give the same split on both paths)."""

from __future__ import annotations

import math

import numpy as np
import torch

from project.errors import fail


class TensorBatches(torch.utils.data.Dataset):
    """Images and labels in memory; ``__getitems__`` makes a batch one indexing operation. With
    ``index`` it is a subset of ``images`` read through that index, without a copy of its own."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None):
        self._images, self.index = images, index
        self.labels = labels if index is None else labels[index]

    @property
    def images(self) -> torch.Tensor:
        return self._images if self.index is None else self._images[self.index]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self._images[i if self.index is None else self.index[i]], self.labels[i]

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices)
        return self._images[index if self.index is None else self.index[index]], self.labels[index]

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` images (uint8), as a streamed split gives them too."""
        return self._images[:n] if self.index is None else self._images[self.index[:n]]

    def chunks(self, size: int):
        """The images, ``size`` at a time (a copy of one chunk at a time, never of the split)."""
        for start in range(0, len(self), size):
            yield self._images[start:start + size] if self.index is None else self._images[self.index[start:start + size]]


class EpochSampler(torch.utils.data.RandomSampler):
    """torch's RandomSampler, drawing each epoch's seed from the global stream as it does (so a run
    shuffles exactly as before), that remembers the seed: a run stopped mid-epoch saves it, and
    ``continue_epoch(seed, skip)`` makes the next epoch that same order from its ``skip``-th sample,
    so a resumed run trains each remaining batch of the cut epoch, and only those. Its length stays
    the whole epoch's, as Lightning counts the batches already trained."""

    def __init__(self, data_source):
        super().__init__(data_source)
        self.seed: int | None = None
        self._continue: tuple[int, int] | None = None

    def continue_epoch(self, seed: int, skip: int) -> None:
        self._continue = (seed, skip)

    def __iter__(self):
        if self._continue is not None:
            (self.seed, skip), self._continue = self._continue, None
        else:
            self.seed, skip = int(torch.empty((), dtype=torch.int64).random_().item()), 0
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()[skip:]


class EpochDistributedSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler (its order is seeded by the epoch already) that continues a cut epoch."""

    _skip = 0

    def continue_epoch(self, seed, skip: int) -> None:
        self._skip = skip

    def __iter__(self):
        skip, self._skip = self._skip, 0
        yield from list(super().__iter__())[skip:]


def split_indices(labels: np.ndarray, val_fraction: float, test_fraction: float,
                  train_size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint train/val/test indices, stratified by class when every class has two samples.

    A fraction of 0 means the data set brings that split itself; ``val_fraction`` is a share of
    the training data where the set brings its test split, else of the whole set.
    """
    n = len(labels)
    index = np.arange(n)

    def carve(idx: np.ndarray, size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        if size < 1 or size >= len(idx):
            fail(f"data.{what}", {"test_fraction": test_fraction, "val_fraction": val_fraction}.get(what, size),
                 "a value that leaves samples on both sides", f"leaves an empty split ({size} of {len(idx)} samples)")
        part = idx[stratified_part(labels[idx], size, seed)]
        return np.setdiff1d(idx, part), part

    test_idx = np.array([], dtype=np.int64)
    if test_fraction > 0:
        index, test_idx = carve(index, math.ceil(n * test_fraction), "test_fraction")
    val_idx = np.array([], dtype=np.int64)
    if val_fraction > 0:
        index, val_idx = carve(index, math.ceil(n * val_fraction), "val_fraction")
    if train_size is not None:
        if train_size > len(index):
            fail("data.train_size", train_size, f"2 to {len(index)}, or null (all)",
                 f"is larger than the training split ({len(index)} samples)")
        if train_size < len(index):
            _, index = carve(index, train_size, "train_size")
    return index, val_idx, test_idx


def split_plan(labels: np.ndarray, settings, brought_val: int | None, brought_test: bool):
    """The split both paths (in memory, streamed) make of a set's training labels: train, val and
    test indices (val and test empty where the set brings its own; ``brought_val`` is the size of
    its validation split), the clean training subset as positions in train (None: off), and the
    unused indices: the training split's samples that ``train_size`` leaves out (sorted)."""
    fractions = (0.0 if brought_val is not None else settings["val_fraction"], 0.0 if brought_test else settings["test_fraction"])
    train, val, test = split_indices(labels, *fractions, settings["train_size"], settings["seed"])
    unused = np.array([], dtype=np.int64)
    if settings["train_size"] is not None:  # the same val and test carves, then everything train_size left
        unused = np.setdiff1d(split_indices(labels, *fractions, None, settings["seed"])[0], train)
    size = settings["clean_train_size"]
    size = (brought_val if brought_val is not None else len(val)) if size is None else size
    # The same images every epoch, so the curve moves with the model, not with the draw.
    return train, val, test, stratified_part(labels[train], size, settings["seed"]) if size else None, unused


def stratified_part(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified sample of ``size`` of these labels (all of them if fewer)."""
    from sklearn.model_selection import train_test_split

    if size >= len(labels):
        return np.arange(len(labels))
    counts = np.bincount(labels)
    classes = int((counts > 0).sum())
    stratify = labels if counts[counts > 0].min() >= 2 and classes <= size <= len(labels) - classes else None
    _, part = train_test_split(np.arange(len(labels)), test_size=size, random_state=seed, stratify=stratify)
    return np.sort(part)


class RunningStats:
    """Per-channel count, sum, sum of squares, min and max of uint8 images, added a batch at a time
    (float64 sums), so the statistics of a split never need a float copy of it."""

    def __init__(self, channels: int):
        self.n = 0
        self.sum, self.sq = torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
        self.low, self.high = torch.full((channels,), 255), torch.zeros(channels, dtype=torch.long)

    def add(self, images: torch.Tensor) -> None:
        x = images.transpose(0, 1).reshape(images.shape[1], -1)  # (C, pixels) of this batch only
        self.n += x.shape[1]
        self.sum += x.sum(dim=1, dtype=torch.float64)
        self.sq += x.double().square().sum(dim=1)
        self.low, self.high = torch.minimum(self.low, x.amin(dim=1).long()), torch.maximum(self.high, x.amax(dim=1).long())

    def shift_scale(self, normalize: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(shift, scale) such that (x / 255 - shift) / scale normalizes: standardize (the unbiased
        std, as torch.std), minmax or none."""
        c = len(self.sum)
        if normalize == "standardize":
            mean = self.sum / self.n
            var = (self.sq - self.n * mean.square()) / max(self.n - 1, 1)
            shift, scale = mean / 255, var.clamp_min(0).sqrt() / 255
        elif normalize == "minmax":
            shift, scale = self.low.double() / 255, (self.high - self.low).double() / 255
        elif normalize == "none":
            shift, scale = torch.zeros(c), torch.ones(c)
        else:
            fail("data.normalize", normalize, "minmax, none, standardize", "is not known")
        return shift.float().view(1, c, 1, 1), scale.float().clamp_min(1e-6).view(1, c, 1, 1)


# Images summed at a time: about 4 million pixels (32 MB of float64), whatever the image size.
CHUNK_PIXELS = 4_000_000


def chunk_images(shape) -> int:
    return max(1, CHUNK_PIXELS // math.prod(shape))


def normalization_stats(images: torch.Tensor, normalize: str, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (shift, scale) such that (x - shift) / scale normalizes, from these images only,
    a chunk at a time: loading peaks at the uint8 data and one chunk, not a float copy of the split."""
    chunk = chunk or chunk_images(images.shape[1:])
    stats = RunningStats(images.shape[1])
    for start in range(0, len(images), chunk):
        stats.add(images[start:start + chunk])
    return stats.shift_scale(normalize)
