"""The split and the normalization statistics (project/data/splits.py), checked by hand: sizes,
disjointness, strata, seeds, and statistics summed a chunk at a time against torch on the whole."""

import numpy as np
import pytest
import torch

from project.data.splits import RunningStats, TensorBatches, chunk_images, normalization_stats, split_indices, split_plan
from project.errors import SettingError


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


@pytest.mark.parametrize("normalize", ["standardize", "minmax", "none"])
def test_statistics_added_a_chunk_at_a_time_equal_the_whole_splits(normalize):
    """The running sums (a chunk of 7 images at a time, the last chunk short) give what torch gives
    on a float copy of the whole split, which loading no longer makes."""
    images = torch.randint(3, 250, (100, 3, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = (images.float() / 255).transpose(0, 1).reshape(3, -1)
    expected = {"standardize": (x.mean(1), x.std(1)), "minmax": (x.amin(1), x.amax(1) - x.amin(1)),
                "none": (torch.zeros(3), torch.ones(3))}[normalize]
    shift, scale = normalization_stats(images, normalize, chunk=7)
    assert torch.allclose(shift.flatten(), expected[0], atol=1e-6) and torch.allclose(scale.flatten(), expected[1], atol=1e-6)


SETTINGS = {"val_fraction": 0.1, "test_fraction": 0.2, "train_size": None, "seed": 0, "clean_train_size": None}


def test_split_plan_clean_subset_is_inside_train_and_as_large_as_val():
    labels = np.arange(1000) % 10
    train, val, test, clean, unused = split_plan(labels, SETTINGS, None, False)
    assert (len(train), len(val), len(test)) == (700, 100, 200)
    assert len(clean) == len(val) == 100 and clean.max() < len(train)  # positions in train, not indices of the set
    assert np.bincount(labels[train[clean]]).tolist() == [10] * 10
    assert len(unused) == 0  # every training sample is trained on


def test_split_plan_unused_is_the_training_split_that_train_size_leaves_out():
    labels = np.arange(1000) % 10
    whole, val, test, _, _ = split_plan(labels, SETTINGS, None, False)
    train, val2, test2, _, unused = split_plan(labels, {**SETTINGS, "train_size": 100}, None, False)
    assert (val2 == val).all() and (test2 == test).all()  # train_size carves the training split only
    assert len(train) == 100 and len(unused) == 600 and sorted([*train, *unused]) == sorted(whole)
    assert not set(unused) & (set(train) | set(val) | set(test))


def test_split_plan_leaves_the_sets_own_splits_alone():
    """A set that brings its test split (and a validation split of 50) gets neither carved again;
    the clean subset follows the brought validation size, and 0 turns it off."""
    labels = np.arange(600) % 10
    train, val, test, clean, unused = split_plan(labels, SETTINGS, 50, True)
    assert len(train) == 600 and len(val) == 0 and len(test) == 0 and len(clean) == 50
    *_, off, _ = split_plan(labels, {**SETTINGS, "clean_train_size": 0}, None, False)
    assert off is None


def test_a_split_that_would_be_empty_is_one_line():
    with pytest.raises(SettingError, match=r"data.test_fraction=1.0 leaves an empty split \(1000 of 1000 samples\)"):
        split_indices(np.arange(1000) % 10, 0.0, 1.0, None, seed=0)


def test_tensor_batches_are_views_through_the_index():
    images = torch.arange(10 * 4, dtype=torch.uint8).view(10, 1, 2, 2)
    labels = torch.arange(10)
    part = TensorBatches(images, labels, torch.tensor([7, 2, 5]))
    x, y = part.__getitems__([0, 2])
    assert torch.equal(x, images[[7, 5]]) and y.tolist() == [7, 5] and len(part) == 3
    assert torch.equal(part.head(2), images[[7, 2]])
    assert [c.shape[0] for c in part.chunks(2)] == [2, 1] and torch.equal(torch.cat(list(part.chunks(2))), images[[7, 2, 5]])


def test_running_stats_by_hand():
    """Two one-channel images of pixels {0, 255} and {51, 102}: mean 102, unbiased variance by hand."""
    stats = RunningStats(1)
    stats.add(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
    stats.add(torch.tensor([[[[51, 102]]]], dtype=torch.uint8))
    pixels = [0.0, 255.0, 51.0, 102.0]
    mean = sum(pixels) / 4
    var = sum((p - mean) ** 2 for p in pixels) / 3
    shift, scale = stats.shift_scale("standardize")
    assert shift.item() == pytest.approx(mean / 255) and scale.item() == pytest.approx(var ** 0.5 / 255, rel=1e-6)
    low, span = stats.shift_scale("minmax")
    assert low.item() == 0 and span.item() == pytest.approx(1.0)
    with pytest.raises(SettingError, match="data.normalize=zscore is not known; allowed: minmax, none, standardize"):
        stats.shift_scale("zscore")


def test_chunks_hold_about_four_million_pixels_whatever_the_image_size():
    assert chunk_images((1, 8, 8)) == 62_500 and chunk_images((3, 224, 224)) == 26 and chunk_images((3, 4096, 4096)) == 1
