"""Batched augmentation on the training device, with an independent random draw for every sample.

torchvision's transforms draw one set of parameters per call, so applied to a batch every image
gets the same flip or angle, and applied per image they cost a Python call per sample (what makes
classic MNIST training CPU-bound). Here every transform draws a tensor of parameters, one row per
sample; consecutive geometric transforms (crop, flips, rotation, affine, resized crop) are fused
into one affine matrix per sample and resampled with a single ``grid_sample``.

A pipeline is configured as a list of names or ``{name: ..., setting: value}`` dicts, e.g.
``[{name: random_crop, padding: 2}, {name: rotation, degrees: 10}, hflip]``.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from typing import Any, Union

import torch
import torch.nn.functional as F

from project.errors import SettingError, choice, fail, is_finite_number, is_integer

AugmentSpec = Union[str, dict[str, Any]]


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _coin(n: int, p: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def _eye(n: int, device) -> torch.Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


# Geometric transforms return (N, 3, 3) matrices in pixel units centred on the image, mapping
# output positions to input positions (what grid_sample wants).

def random_crop(padding: int = 2) -> Callable:
    """Random crop of a zero-padded image: a random shift of up to ``padding`` whole pixels."""
    if padding < 0:
        fail("random_crop.padding", padding, "an integer >= 0")

    def matrices(n, h, w, gen, device):
        m = _eye(n, device)
        m[:, :2, 2] = torch.randint(-padding, padding + 1, (n, 2), generator=gen, device=device).float()
        return m
    return matrices


def _flip(axis: int, p: float, name: str) -> Callable:
    if not 0.0 <= p <= 1.0:
        fail(f"{name}.p", p, "a number in [0, 1]")

    def matrices(n, h, w, gen, device):
        m = _eye(n, device)
        m[:, axis, axis] = 1.0 - 2.0 * _coin(n, p, gen, device).float()
        return m
    return matrices


def hflip(p: float = 0.5) -> Callable:
    """Mirror left-right with probability ``p``."""
    return _flip(0, p, "hflip")


def vflip(p: float = 0.5) -> Callable:
    """Mirror top-bottom with probability ``p``."""
    return _flip(1, p, "vflip")


def _affine_matrices(angle, scale, shear, tx, ty) -> torch.Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    tan = torch.tan(shear)
    m = torch.zeros(angle.shape[0], 3, 3, device=angle.device)
    # rotation @ shear-x, divided by scale (output -> input), then the translation
    m[:, 0, 0], m[:, 0, 1] = cos / scale, (cos * tan - sin) / scale
    m[:, 1, 0], m[:, 1, 1] = sin / scale, (sin * tan + cos) / scale
    m[:, 0, 2], m[:, 1, 2], m[:, 2, 2] = tx, ty, 1.0
    return m


def affine(degrees: float = 0.0, translate: tuple[float, float] = (0.0, 0.0),
           scale: tuple[float, float] = (1.0, 1.0), shear: float = 0.0) -> Callable:
    """Random rotation (+-degrees), translation (fraction of width, height), scale range, shear (+-degrees)."""
    for name, value in (("degrees", degrees), ("shear", shear)):
        if not 0 <= value <= 180:
            fail(f"affine.{name}", value, "a number of degrees in [0, 180]")
    if not all(0.0 <= t <= 1.0 for t in translate):
        fail("affine.translate", translate, "two fractions in [0, 1]")
    if not 0 < scale[0] <= scale[1]:
        fail("affine.scale", scale, "[low, high] with 0 < low <= high")

    def matrices(n, h, w, gen, device):
        rad = math.pi / 180
        return _affine_matrices(
            _uniform(n, -degrees * rad, degrees * rad, gen, device),
            _uniform(n, scale[0], scale[1], gen, device),
            _uniform(n, -shear * rad, shear * rad, gen, device),
            _uniform(n, -translate[0], translate[0], gen, device) * w,
            _uniform(n, -translate[1], translate[1], gen, device) * h)
    return matrices


def rotation(degrees: float = 10.0) -> Callable:
    """Random rotation by an angle drawn uniformly from [-degrees, degrees]."""
    if not 0 <= degrees <= 180:
        fail("rotation.degrees", degrees, "a number of degrees in [0, 180]")
    return affine(degrees=degrees)


def random_resized_crop(scale: tuple[float, float] = (0.7, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Callable:
    """Crop a random area fraction ``scale`` with aspect ``ratio``, resized back to full size."""
    if not 0 < scale[0] <= scale[1] <= 1:
        fail("random_resized_crop.scale", scale, "[low, high] in (0, 1] with low <= high")
    if not 0 < ratio[0] <= ratio[1]:
        fail("random_resized_crop.ratio", ratio, "[low, high] with 0 < low <= high")

    def matrices(n, h, w, gen, device):
        area = _uniform(n, scale[0], scale[1], gen, device)
        aspect = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen, device))
        sx = torch.sqrt(area * aspect).clamp(max=1.0)
        sy = torch.sqrt(area / aspect).clamp(max=1.0)
        m = _eye(n, device)
        m[:, 0, 0], m[:, 1, 1] = sx, sy
        m[:, 0, 2] = (torch.rand(n, generator=gen, device=device) - 0.5) * (1 - sx) * w
        m[:, 1, 2] = (torch.rand(n, generator=gen, device=device) - 0.5) * (1 - sy) * h
        return m
    return matrices


# Pixel transforms take and return the (N, C, H, W) batch.

def erasing(p: float = 0.5, scale: tuple[float, float] = (0.02, 0.2), ratio: tuple[float, float] = (0.3, 3.3),
            value: float = 0.0) -> Callable:
    """Random erasing (Zhong et al. 2017): a random rectangle set to ``value`` with probability ``p``."""
    if not 0.0 <= p <= 1.0:
        fail("erasing.p", p, "a number in [0, 1]")
    if not 0 < scale[0] <= scale[1] <= 1:
        fail("erasing.scale", scale, "[low, high] in (0, 1] with low <= high")
    if not 0 < ratio[0] <= ratio[1]:
        fail("erasing.ratio", ratio, "[low, high] with 0 < low <= high")

    def apply(x, gen):
        n, _, h, w = x.shape
        area = _uniform(n, scale[0], scale[1], gen, x.device) * h * w
        aspect = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen, x.device))
        eh = torch.sqrt(area / aspect).clamp(1, h)
        ew = torch.sqrt(area * aspect).clamp(1, w)
        top = torch.rand(n, generator=gen, device=x.device) * (h - eh)
        left = torch.rand(n, generator=gen, device=x.device) * (w - ew)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
                  & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
        inside &= _coin(n, p, gen, x.device).view(n, 1, 1)
        return x.masked_fill(inside.unsqueeze(1), value)
    return apply


def jitter(brightness: float = 0.2, contrast: float = 0.2) -> Callable:
    """Random brightness (additive) and contrast (around each image's mean) per sample."""
    for name, value in (("brightness", brightness), ("contrast", contrast)):
        if not 0 <= value <= 1:
            fail(f"jitter.{name}", value, "a number in [0, 1]")

    def apply(x, gen):
        n = x.shape[0]
        b = _uniform(n, -brightness, brightness, gen, x.device).view(n, 1, 1, 1)
        c = _uniform(n, 1 - contrast, 1 + contrast, gen, x.device).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * c + mean + b).clamp(0, 1)
    return apply


def noise(std: float = 0.05) -> Callable:
    """Additive Gaussian pixel noise."""
    if not 0 <= std <= 1:
        fail("noise.std", std, "a number in [0, 1] (pixels are in [0, 1])")

    def apply(x, gen):
        return (x + std * torch.randn(x.shape, generator=gen, device=x.device)).clamp(0, 1)
    return apply


GEOMETRIC: dict[str, Callable[..., Callable]] = {
    "random_crop": random_crop, "hflip": hflip, "vflip": vflip, "rotation": rotation,
    "affine": affine, "random_resized_crop": random_resized_crop,
}
PIXEL: dict[str, Callable[..., Callable]] = {"erasing": erasing, "jitter": jitter, "noise": noise}
AUGMENTATIONS = {**GEOMETRIC, **PIXEL}


def make_augmentation(spec: AugmentSpec) -> tuple[str, Callable]:
    """One pipeline step from a name or a ``{name: ..., **settings}`` dict; errors name the setting."""
    if isinstance(spec, str):
        name, settings = spec, {}
    elif isinstance(spec, dict) and "name" in spec:
        name, settings = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        fail("data.augment", spec, "a name or a {name: ..., setting: value} mapping", "has no name")
    if name not in AUGMENTATIONS:
        choice(AUGMENTATIONS, "data.augment.name", name)
    factory = AUGMENTATIONS[name]
    allowed = set(inspect.signature(factory).parameters)
    unknown = set(settings) - allowed
    if unknown:
        fail(f"data.augment.{name}.{sorted(unknown)[0]}", settings[sorted(unknown)[0]], ", ".join(sorted(allowed)), "is not a setting")
    types = typing.get_type_hints(factory)
    for key, value in settings.items():
        _check_type(f"data.augment.{name}.{key}", value, types[key])
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    try:
        return name, factory(**settings)
    except SettingError as err:
        raise err.within("data.augment") from None


def _check_type(setting: str, value, kind) -> None:
    """A setting's value against its annotation (int, float, tuple[float, float]): the factories'
    range checks can then compare numbers, and NaN or infinity never reaches a transform."""
    if kind in (int, float):
        ok = is_integer(value) if kind is int else is_finite_number(value)
        allowed = "an integer" if kind is int else "a finite number"
    else:  # tuple[float, float]
        size = len(typing.get_args(kind))
        ok = isinstance(value, (list, tuple)) and len(value) == size and all(is_finite_number(v) for v in value)
        allowed = f"a list of {size} finite numbers, e.g. [{', '.join(['0.1'] * size)}]"
    if not ok:
        fail(setting, value, allowed)


class BatchAugment:
    """Applies a pipeline to a float batch in [0, 1], drawing from its own generator.

    The generator is separate from torch's global one so each DDP rank can draw differently and
    so its state can be saved in a checkpoint for an exact resume.
    """

    def __init__(self, specs: list[AugmentSpec]):
        self.specs = list(specs)
        self.steps = [make_augmentation(s) for s in self.specs]
        self.generator: torch.Generator | None = None

    def __bool__(self) -> bool:
        return bool(self.steps)

    def check_image_size(self, height: int, width: int) -> None:
        """A random crop whose padding is the image's size or more can shift the whole image out."""
        for spec in self.specs:
            if isinstance(spec, dict) and spec.get("name") == "random_crop":
                padding = spec.get("padding", 2)
                if padding >= min(height, width):
                    fail("data.augment.random_crop.padding", padding, f"0 to {min(height, width) - 1}",
                         f"shifts {height}x{width} images out of the frame")

    def seed(self, seed: int, device: torch.device | str = "cpu") -> None:
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.steps:
            return x
        if self.generator is None or self.generator.device != x.device:
            self.seed(torch.initial_seed() % 2**31, x.device)
        gen = self.generator
        n, _, h, w = x.shape
        pending: torch.Tensor | None = None
        for name, step in self.steps:
            if name in GEOMETRIC:
                m = step(n, h, w, gen, x.device)
                pending = m if pending is None else pending @ m
            else:
                if pending is not None:
                    x, pending = _warp(x, pending), None
                x = step(x, gen)
        return _warp(x, pending) if pending is not None else x


def _warp(x: torch.Tensor, pixel_matrices: torch.Tensor) -> torch.Tensor:
    """Resample every image with its own matrix (pixel units, centred); outside is zero."""
    n, _, h, w = x.shape
    # Convert to the [-1, 1] coordinates of affine_grid: S^-1 M S with S = diag(w/2, h/2).
    to_pixels = torch.diag(torch.tensor([w / 2, h / 2, 1.0], device=x.device))
    to_unit = torch.diag(torch.tensor([2 / w, 2 / h, 1.0], device=x.device))
    theta = (to_unit @ pixel_matrices @ to_pixels)[:, :2, :].to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
