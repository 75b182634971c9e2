"""The data sets: torchvision's MNIST read from IDX files the tests write, file checks, and the
registry: a data set added from a test file alone trains."""

import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from project.data import datasets
from project.data.datamodule import ImageDataModule
from project.data.datasets import DATASETS, DatasetInfo, Splits
from project.errors import DataError


def write_idx(path, array: np.ndarray) -> None:
    """An IDX file as MNIST ships it: magic (0, 0, type 0x08 = ubyte, ndim), big-endian sizes, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root, folder="MNIST", n_train=300, n_test=60, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        data[prefix] = (images, labels)
    return data


@pytest.mark.parametrize("dataset,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_files_load_through_the_module(tmp_path, dataset, folder):
    written = write_mnist(tmp_path, folder)
    dm = ImageDataModule(dataset=dataset, data_dir=str(tmp_path), download=False, val_fraction=0.2)
    dm.setup("fit")
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    # the official test split is the test set; validation is carved from training
    assert torch.equal(dm.test_set.images[:, 0], torch.from_numpy(written["t10k"][0]))
    assert len(dm.val_set) == 60 and len(dm.train_set) == 240
    all_train = {bytes(img) for img in written["train"][0]}
    assert all(bytes(img[0].numpy()) in all_train for img in dm.val_set.images)


def test_missing_torchvision_data_says_where_and_what(tmp_path):
    dm = ImageDataModule(dataset="mnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "--data.dataset=digits" in message


def test_truncated_file_is_a_clear_error(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    dm = ImageDataModule(dataset="mnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(DataError, match="holds train-images-idx3-ubyte, which has 5000 bytes, but its header declares "
                       "300 x 28 x 28 values.*truncated"):
        dm.setup("fit")


def _error_of(check) -> str:
    try:
        check()
    except Exception as err:  # the text of whatever it raised
        return str(err)
    return "no error"


def _as_nobody(check) -> str:
    """The error ``check()`` raises as an unprivileged user: root reads every file, so as root it
    runs in a child process that has become user nobody."""
    if os.getuid() != 0:
        return _error_of(check)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setgid(65534)
        os.setuid(65534)
        os.write(write, _error_of(check).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    return os.read(read, 10_000).decode()


def test_an_unreadable_file_is_named():
    root = Path(tempfile.mkdtemp())  # not under pytest's folder, which only root may enter
    try:
        write_mnist(root)
        for folder in (root, *root.rglob("*")):
            folder.chmod(0o755 if folder.is_dir() else 0o644)
        unreadable = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
        unreadable.chmod(0)
        message = _as_nobody(lambda: datasets.check_idx_files(root / "MNIST" / "raw", (1, 28, 28), 10))
    finally:
        shutil.rmtree(root)
    assert message == (f"data.data_dir={unreadable.parent} holds train-labels-idx1-ubyte, which cannot be read "
                       "(Permission denied); allowed: files this user can read")


def test_mnist5k_is_500_genuine_digits_per_class():
    splits = DATASETS["mnist5k"].load({})
    images, labels = splits.train
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.uint8 and splits.test is None
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    # handwriting, not noise: the ink is in the middle of the frame, the borders are blank
    assert images[:, :, 10:18, 10:18].float().mean() > 4 * images[:, :, :3, :].float().mean()


def test_a_data_set_added_from_a_test_file_trains(monkeypatch, make_trainer):
    def stripes(settings):  # 2 classes: horizontal or vertical stripes
        images = torch.zeros(200, 1, 8, 8, dtype=torch.uint8)
        images[:100, :, ::2, :] = 255
        images[100:, :, :, ::2] = 255
        return Splits((images, torch.arange(200) // 100))

    monkeypatch.setitem(datasets.DATASETS, "stripes", DatasetInfo(stripes, (1, 8, 8), ("horizontal", "vertical")))
    dm = ImageDataModule(dataset="stripes", augment=[], batch_size=16)
    assert dm.num_classes == 2 and dm.input_shape == (1, 8, 8) and dm.class_names == ["horizontal", "vertical"]
    from project.model.classifier import ImageClassifier

    model = ImageClassifier(num_classes=2, input_shape=(1, 8, 8))
    trainer = make_trainer(max_epochs=3)
    trainer.fit(model, dm)
    assert trainer.test(model, dm, verbose=False)[0]["test/acc"] == 1.0


def test_data_dir_with_a_set_that_does_not_read_it_is_refused():
    with pytest.raises(ValueError, match="data.data_dir=mine is not read by data.dataset=digits"):
        ImageDataModule(dataset="digits", data_dir="mine")


def test_an_image_folder_of_mixed_sizes_says_what_is_resized_to_what(tmp_path):
    from PIL import Image

    from project.data.datasets import DATASETS

    for label in ("a", "b"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(6):
            size = 12 if (label, i) == ("a", 0) else 8  # the first training image is 12x12, the rest 8x8
            Image.new("L", (size, size), color=40 * i).save(tmp_path / "train" / label / f"{i}.png")
    splits = DATASETS["image_folder"].load({"data_dir": str(tmp_path), "image_size": None, "channels": None})
    assert splits.train[0].shape == (12, 1, 12, 12)
    assert splits.note == (f"note: data.data_dir={tmp_path}: 11 of 12 images are resized to 12x12 (the first training "
                           "image's size; data.image_size sets another): 11 of 8x8")
    same = DATASETS["image_folder"].load({"data_dir": str(tmp_path), "image_size": [12, 12], "channels": None})
    assert "(data.image_size)" in same.note
