import struct

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule

from project.augment import BatchAugment
from project.data import DataError, ImageDataModule, normalization_stats, split_indices


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
    with pytest.raises(DataError, match="train-images-idx3-ubyte: 5000 bytes, but its header declares 300 x 28 x 28 values.*truncated"):
        dm.setup("fit")


def test_digits_split_sizes_disjoint_and_seeded():
    labels = np.arange(1000) % 10
    train, val, test = split_indices(labels, 0.1, 0.2, None, seed=0)
    assert (len(train), len(val), len(test)) == (700, 100, 200)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert np.bincount(labels[val]).tolist() == [10] * 10  # stratified
    again = split_indices(labels, 0.1, 0.2, None, seed=0)
    other = split_indices(labels, 0.1, 0.2, None, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(val, other[1])


def test_train_size_limits_training_split():
    labels = np.arange(1000) % 10
    train, val, _ = split_indices(labels, 0.1, 0.2, 100, seed=0)
    assert len(train) == 100 and np.bincount(labels[train]).tolist() == [10] * 10
    with pytest.raises(ValueError, match=r"data.train_size=701 is larger than the training split \(700"):
        split_indices(labels, 0.1, 0.2, 701, seed=0)


def test_datamodule_digits_split():
    dm = ImageDataModule(train_size=500)
    dm.setup("fit")
    assert len(dm.train_set) == 500 and len(dm.val_set) == 180 and len(dm.test_set) == 360
    assert dm.train_set.images.dtype == torch.uint8 and dm.input_shape == (1, 8, 8)


def test_normalization_statistics_come_from_training_split_only():
    dm = ImageDataModule(dataset="fake", fake_size=200, fake_shape=(3, 4, 4))
    dm.setup("fit")
    train = dm.train_set.images.float() / 255
    assert torch.allclose(dm.mean.flatten(), train.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(dm.std.flatten(), train.transpose(0, 1).reshape(3, -1).std(dim=1), atol=1e-6)
    before = dm.mean.clone(), dm.std.clone()
    dm.val_set.images.zero_()
    dm.test_set.images.fill_(255)
    assert all(torch.equal(a, b) for a, b in zip(before, normalization_stats(dm.train_set.images, "standardize")))
    shift, scale = normalization_stats(dm.train_set.images, "minmax")
    out = (train - shift) / scale
    assert out.amin().item() == pytest.approx(0) and out.amax().item() == pytest.approx(1)


def test_batches_are_one_indexing_operation():
    dm = ImageDataModule(batch_size=16)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 8, 8) and images.dtype == torch.uint8 and labels.shape == (16,)


class _Recorder(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen = {"train": [], "val": [], "train_clean": []}

    def training_step(self, batch, i):
        self.seen["train"].append(batch[0].clone())
        return self.layer(batch[0].mean().view(1, 1)).sum()

    def validation_step(self, batch, i, dataloader_idx=0):
        self.seen["val" if dataloader_idx == 0 else "train_clean"].append(batch[0].clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_augmentation_applies_in_training_only(make_trainer):
    dm = ImageDataModule(batch_size=8, augment=[{"name": "rotation", "degrees": 30}], eval_batch_size=8)
    model = _Recorder()
    make_trainer(limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0).fit(model, dm)
    plain_val = dm.prepare(dm.val_set.images[:8])
    assert torch.allclose(model.seen["val"][0], plain_val)
    # the clean training subset is evaluated without augmentation too
    assert torch.allclose(model.seen["train_clean"][0], dm.prepare(dm.train_clean_set.images[:8]))
    train_batch = model.seen["train"][0]
    assert train_batch.shape == (8, 1, 8, 8) and train_batch.dtype == torch.float32
    # normalized augmented data is not any plain training batch
    plain = dm.prepare(dm.train_set.images)
    assert not any(torch.allclose(train_batch[0], p) for p in plain)


def test_draws_differ_between_samples_and_shapes_are_kept():
    augment = BatchAugment(["hflip", {"name": "affine", "degrees": 20, "translate": [0.1, 0.1]}, "erasing"])
    augment.seed(0)
    x = torch.rand(1, 3, 16, 12).expand(32, 3, 16, 12).contiguous()
    y = augment(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    distinct = {tuple(img.flatten()[:50].tolist()) for img in y}
    assert len(distinct) == 32


def test_hflip_and_crop_are_exact_pixel_moves():
    x = torch.rand(64, 1, 6, 6)
    flip = BatchAugment([{"name": "hflip", "p": 1.0}])
    assert torch.allclose(flip(x), x.flip(-1), atol=1e-6)
    crop = BatchAugment([{"name": "random_crop", "padding": 2}])
    crop.seed(1)
    y = crop(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for img, out in zip(padded, y):
        shifts = [img[:, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(torch.allclose(out, s, atol=1e-5) for s in shifts)


@pytest.mark.parametrize("kwargs,message", [
    (dict(val_fraction=0.0), r"data.val_fraction=0.0 must be in \(0, 1\)"),
    (dict(val_fraction=0.5, test_fraction=0.5), "must be < 1 to leave a training split"),
    (dict(dataset="imagenet"), "data.dataset='imagenet' is not known.*cifar10"),
    (dict(augment=["mixup"]), "augment name 'mixup' is not known.*hflip"),
    (dict(augment=[{"name": "rotation", "angle": 3}]), r"unknown settings \['angle'\]; allowed: \['degrees'\]"),
    (dict(augment=[{"name": "hflip", "p": 2}]), r"hflip.p=2 must be in \[0, 1\]"),
    (dict(train_size=0), r"data.train_size=0; allowed: an integer >= 2"),
    (dict(batch_size=0), "data.batch_size=0 must be >= 1"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageDataModule(**kwargs)


def test_clean_training_subset_is_fixed_stratified_and_as_large_as_validation():
    dm = ImageDataModule(augment=[])
    dm.setup()
    clean = dm.train_clean_set
    assert len(clean) == len(dm.val_set) == 180
    # drawn from the training split: every clean image is a training image
    train = {tuple(x.flatten().tolist()) for x in dm.train_set.images}
    assert all(tuple(x.flatten().tolist()) in train for x in clean.images)
    # stratified: each class's share within one sample of its share in the training split
    share = torch.bincount(dm.train_set.labels, minlength=10) / len(dm.train_set)
    assert (torch.bincount(clean.labels, minlength=10) - share * len(clean)).abs().max() <= 1
    again = ImageDataModule(augment=[])
    again.setup()
    assert torch.equal(again.train_clean_set.images, clean.images)


@pytest.mark.parametrize("size,expected", [(0, None), (50, 50), (None, 100)])
def test_clean_training_subset_size(size, expected):
    dm = ImageDataModule(augment=[], train_size=100, clean_train_size=size)
    dm.setup()
    assert (dm.train_clean_set is None) if expected is None else len(dm.train_clean_set) == expected
    loaders = dm.val_dataloader()
    assert isinstance(loaders, list) == (expected is not None)
