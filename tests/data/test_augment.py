"""Batched augmentation: a draw per sample, exact pixel moves, ranges checked by setting."""

import pytest
import torch

from project.data.augment import BatchAugment


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


def test_the_same_seed_draws_the_same_augmentation():
    x = torch.rand(16, 1, 8, 8)
    outs = []
    for seed in (3, 3, 4):
        augment = BatchAugment(["hflip", {"name": "rotation", "degrees": 20}])
        augment.seed(seed)
        outs.append(augment(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_noise_adds_the_configured_spread():
    augment = BatchAugment([{"name": "noise", "std": 0.1}])
    augment.seed(0)
    x = torch.full((64, 1, 16, 16), 0.5)
    assert (augment(x) - x).std().item() == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("spec,message", [
    ({"name": "rotation", "degrees": 1e308}, r"rotation.degrees=1e\+308; allowed: a number of degrees in \[0, 180\]"),
    ({"name": "noise", "std": 1e308}, r"noise.std=1e\+308; allowed: a number in \[0, 1\]"),
    ({"name": "affine", "degrees": 400}, r"affine.degrees=400; allowed: a number of degrees in \[0, 180\]"),
    ({"name": "jitter", "contrast": 3}, r"jitter.contrast=3; allowed: a number in \[0, 1\]"),
])
def test_ranges_that_would_only_make_noise_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        BatchAugment([spec])
