"""Building blocks: normalization, activation and initialization registries, and the two networks.

Each technique is one string so a config line switches it; each registry is a dict, and adding a
choice is one line in it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from project.errors import choice, fail, is_finite_number

# --- normalization -------------------------------------------------------------------------------


def _batch(num_features: int, dim: int, groups: int) -> nn.Module:
    return nn.BatchNorm2d(num_features) if dim == 2 else nn.BatchNorm1d(num_features)


def _layer(num_features: int, dim: int, groups: int) -> nn.Module:
    # One group over (C, H, W) is layer norm for feature maps (Ba et al. 2016): per-sample statistics.
    return nn.GroupNorm(1, num_features) if dim == 2 else nn.LayerNorm(num_features)


def _instance(num_features: int, dim: int, groups: int) -> nn.Module:
    if dim == 1:
        fail("norm", "instance", "layer, batch, group or none with an MLP", "normalizes each channel of one "
             "sample over its pixels, so it needs feature maps; flat features have one value per channel")
    return nn.InstanceNorm2d(num_features, affine=True)


def _group(num_features: int, dim: int, groups: int) -> nn.Module:
    if groups < 1 or num_features % groups:
        fail("norm_groups", groups, "a positive divisor of every normalized width",
             f"does not divide a layer of {num_features} features")
    if dim == 1:
        # Group norm on flat features: per-sample statistics over each group of features.
        return _FlatGroupNorm(groups, num_features)
    return nn.GroupNorm(groups, num_features)


class _FlatGroupNorm(nn.GroupNorm):
    """GroupNorm for (N, C) tensors: torch's accepts them but treats them as (N, C, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(-1)).squeeze(-1)


def _none(num_features: int, dim: int, groups: int) -> nn.Module:
    return nn.Identity()


NORMS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "batch": _batch,
    "layer": _layer,
    "instance": _instance,
    "group": _group,
    "none": _none,
}


def make_norm(name: str, num_features: int, dim: int = 2, groups: int = 8) -> nn.Module:
    """A normalization layer for feature maps (``dim=2``) or flat features (``dim=1``)."""
    if dim not in (1, 2):
        fail("dim", dim, "2 for feature maps or 1 for flat features")
    return choice(NORMS, "norm", name)(num_features, dim, groups)


# --- activation ----------------------------------------------------------------------------------

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

# The gain name torch.nn.init.calculate_gain knows for each activation (Kaiming and Xavier use it).
_GAIN_NAMES = {"relu": "relu", "leaky_relu": "leaky_relu", "elu": "relu", "gelu": "relu",
               "silu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}


def make_activation(name: str) -> nn.Module:
    return choice(ACTIVATIONS, "activation", name)()


# --- initialization ------------------------------------------------------------------------------
#
# By default xavier_* and kaiming_* are the textbook formulas, whatever the activation:
#   Xavier/Glorot (Glorot & Bengio 2010): Var(w) = 2 / (n_in + n_out)
#   He/Kaiming (He et al. 2015):          Var(w) = 2 / ((1 + a^2) n_in), a = the leaky_relu slope (0 for relu)
# ``activation_gain=True`` scales them by torch's recommended gain for the activation instead
# (nn.init.calculate_gain: sqrt(2) for ReLU-like units, 5/3 for tanh, 1 for sigmoid). The output
# layer (the logits) has no activation after it, so it always gets gain 1.


def _activation_gain(activation: str, a: float) -> float:
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", a)
    return nn.init.calculate_gain(_GAIN_NAMES[activation])


def _xavier(fill):
    def init(w, activation="relu", gain=None, activation_gain=False, output=False, a=0.01, **kw):
        if gain is None:
            gain = _activation_gain(activation, a) if activation_gain and not output else 1.0
        fill(w, gain=gain)
    return init


def _kaiming(fill):
    def init(w, activation="relu", a=0.01, activation_gain=False, output=False, gain=None, **kw):
        if output:
            fill(w, nonlinearity="linear")  # gain 1: Var(w) = 1 / n_in
        elif activation_gain:
            slope = a if activation == "leaky_relu" else 0
            fill(w, a=slope, nonlinearity="leaky_relu" if activation == "leaky_relu" else _GAIN_NAMES[activation])
        else:
            fill(w, a=a if activation == "leaky_relu" else 0, nonlinearity="leaky_relu")
    return init


INITS: dict[str, Callable[..., None]] = {
    "default": lambda w, **kw: None,  # keep torch's own layer initialization
    "zeros": lambda w, **kw: nn.init.zeros_(w),
    "constant": lambda w, value=0.01, **kw: nn.init.constant_(w, value),
    "uniform": lambda w, low=-0.05, high=0.05, **kw: nn.init.uniform_(w, low, high),
    "normal": lambda w, mean=0.0, std=0.01, **kw: nn.init.normal_(w, mean, std),
    "xavier_uniform": _xavier(nn.init.xavier_uniform_),
    "xavier_normal": _xavier(nn.init.xavier_normal_),
    "kaiming_uniform": _kaiming(nn.init.kaiming_uniform_),
    "kaiming_normal": _kaiming(nn.init.kaiming_normal_),
    "orthogonal": lambda w, gain=None, **kw: nn.init.orthogonal_(w, gain=1.0 if gain is None else gain),
}

INIT_SETTINGS = {"value", "low", "high", "mean", "std", "a", "gain"}
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _is_affine_norm(layer: nn.Module) -> bool:
    """A normalization layer with its own scale and shift (a 1-D weight and bias): it starts at
    (1, 0), and the layer before it needs no bias of its own (the norm's shift takes its place)."""
    weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    return (not isinstance(layer, WEIGHT_LAYERS) and isinstance(weight, nn.Parameter) and weight.dim() == 1
            and isinstance(bias, nn.Parameter))


def layer_weights(module: nn.Module) -> list[nn.Parameter]:
    """The weights of every conv and linear layer: what the penalty acts on and the weight statistics describe."""
    return [m.weight for m in module.modules() if isinstance(m, WEIGHT_LAYERS)]


def init_weights(module: nn.Module, scheme: str = "kaiming_normal", *, activation: str = "relu",
                 activation_gain: bool = False, output: nn.Module | None = None, **kw) -> nn.Module:
    """Initialize every conv and linear weight with ``scheme``; biases to 0, norm layers to (1, 0).

    Keyword settings: ``value`` (constant), ``low``/``high`` (uniform), ``mean``/``std`` (normal),
    ``a`` (the leaky_relu slope for Kaiming), ``gain`` (orthogonal, or to override Xavier's gain).
    ``output`` is the layer that makes the logits: Xavier and Kaiming give it gain 1.
    """
    fill = choice(INITS, "init", scheme)
    unknown = set(kw) - INIT_SETTINGS
    if unknown:
        fail(f"init_kwargs.{sorted(unknown)[0]}", kw[sorted(unknown)[0]], ", ".join(sorted(INIT_SETTINGS)),
             "is not a setting")
    _check_init_settings(kw)
    if scheme == "default":
        return module
    for layer in module.modules():
        if isinstance(layer, WEIGHT_LAYERS):
            fill(layer.weight, activation=activation, activation_gain=activation_gain, output=layer is output, **kw)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif _is_affine_norm(layer):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
    return module


# What each init setting may be: a negative std or gain, or low >= high, would fail or mislead.
_INIT_RANGES = {"value": ("a finite number", lambda v: True), "mean": ("a finite number", lambda v: True),
                "std": ("a finite number >= 0", lambda v: v >= 0), "a": ("a finite number >= 0", lambda v: v >= 0),
                "gain": ("a finite number > 0", lambda v: v > 0),
                "low": ("a finite number", lambda v: True), "high": ("a finite number", lambda v: True)}


def _check_init_settings(kw: dict) -> None:
    for key, value in kw.items():
        allowed, test = _INIT_RANGES[key]
        if not is_finite_number(value) or not test(value):
            fail(f"init_kwargs.{key}", value, allowed)
    if kw.get("low", -0.05) >= kw.get("high", 0.05):
        fail("init_kwargs.low", kw.get("low", -0.05), f"a number < init_kwargs.high ({kw.get('high', 0.05)})")


# --- networks ------------------------------------------------------------------------------------


def _check_common(widths: Sequence[int], setting: str, dropout: float, norm: str, activation: str,
                  init: str) -> None:
    if not widths or any(int(w) <= 0 for w in widths):
        fail(setting, list(widths), "a non-empty list of positive integers")
    if not 0.0 <= dropout < 1.0:
        fail("dropout", dropout, "a number in [0, 1)")
    choice(NORMS, "norm", norm)
    choice(ACTIVATIONS, "activation", activation)
    choice(INITS, "init", init)


def check_input(input_shape: Sequence[int], num_classes: int) -> tuple[int, int, int]:
    """The data's shape and classes as every network of the project takes them: three positive sizes
    and at least two classes (one line naming the bad one otherwise)."""
    if len(input_shape) != 3 or any(int(s) <= 0 for s in input_shape):
        fail("input_shape", tuple(input_shape), "three positive sizes (channels, height, width)")
    if num_classes < 2:
        fail("num_classes", num_classes, "an integer >= 2")
    return tuple(int(s) for s in input_shape)  # type: ignore[return-value]


def network_class(net):
    """The class (or function) behind a configured network: jsonargparse hands the model a partial
    of its own around the class and its settings, Python code a functools.partial or the class."""
    while isinstance(net, functools.partial):
        wrapped = net.func.__name__ == "call_without_instantiate_context" and net.args  # jsonargparse's
        net = net.args[-1] if wrapped else net.func
    return net


class Network(nn.Module):
    """Base of the networks the model accepts: short names like ``--model.net=MLP`` resolve among
    its subclasses, not among every ``nn.Module`` (torchvision has an ``MLP`` too)."""


class ConvNet(Network):
    """Conv blocks (conv -> norm -> activation [-> spatial dropout]) with 2x2 pooling, then a head.

    Pooling happens after a block only while the feature map is at least 4 pixels wide, so the same
    widths fit 8x8 digits, 28x28 MNIST and 32x32 CIFAR; global average pooling ends the trunk so
    the head never needs the spatial size.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        widths: list[int] = [32, 64, 128],  # noqa: B006 - jsonargparse reads the default
        hidden: int = 128,
        norm: str = "batch",
        norm_groups: int = 8,
        activation: str = "relu",
        dropout: float = 0.1,
        conv_dropout: float = 0.0,
        init: str = "kaiming_normal",
        init_kwargs: dict[str, float] | None = None,
        activation_gain: bool = False,
        width: float = 1.0,
    ):
        """
        Args:
            input_shape: (channels, height, width), filled in from the data module.
            num_classes: number of outputs, filled in from the data module.
            widths: output channels of each conv block.
            hidden: width of the classifier head's hidden layer (0 for a single linear layer).
            width: a multiplier of every conv width and of hidden (rounded, at least 1): the
                network's size as one number, for a model-size learning curve (--sweep).
            norm: normalization after each conv and in the head: batch, layer, instance, group, none.
            norm_groups: number of groups for norm=group (must divide every width).
            activation: relu, leaky_relu, elu, gelu, silu, tanh or sigmoid.
            dropout: dropout probability in the head, in [0, 1).
            conv_dropout: spatial (channel) dropout after each conv block, in [0, 1).
            init: weight initialization: default, zeros, constant, uniform, normal, xavier_uniform,
                xavier_normal, kaiming_uniform, kaiming_normal, orthogonal.
            init_kwargs: settings of the init scheme (value, low, high, mean, std, a, gain).
            activation_gain: scale xavier_*/kaiming_* by the activation's gain (torch's
                calculate_gain: sqrt(2) for ReLU-like units, 5/3 for tanh); off, they are the
                textbook Glorot Var 2/(n_in+n_out) and He Var 2/((1+a^2) n_in). The output layer gets gain 1.
        """
        super().__init__()
        if not (is_finite_number(width) and width > 0):
            fail("width", width, "a number > 0 (a multiplier of widths and hidden)")
        if width != 1:  # a width of 0 or less stays itself, for the check below to name it
            widths = [max(1, round(w * width)) if is_finite_number(w) and w > 0 else w for w in widths]
            hidden = max(1, round(hidden * width)) if hidden > 0 else hidden
        channels, height, image_width = check_input(input_shape, num_classes)
        _check_common(widths, "widths", dropout, norm, activation, init)
        if not 0.0 <= conv_dropout < 1.0:
            fail("conv_dropout", conv_dropout, "a number in [0, 1)")
        if hidden < 0:
            fail("hidden", hidden, "an integer >= 0 (0: no hidden layer)")
        blocks: list[nn.Module] = []
        size = min(height, image_width)
        for out in widths:
            norm_layer = make_norm(norm, out, 2, norm_groups)
            block = [nn.Conv2d(channels, out, 3, padding=1, bias=not _is_affine_norm(norm_layer)), norm_layer,
                     make_activation(activation)]
            if conv_dropout:
                block.append(nn.Dropout2d(conv_dropout))
            if size >= 4:
                block.append(nn.MaxPool2d(2))
                size //= 2
            blocks.append(nn.Sequential(*block))
            channels = out
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        if hidden:
            # Instance norm needs feature maps; the head uses layer norm in its place.
            head_norm = "layer" if norm == "instance" else norm
            self.head = nn.Sequential(
                nn.Linear(channels, hidden), make_norm(head_norm, hidden, 1, norm_groups),
                make_activation(activation), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        init_weights(self, init, activation=activation, activation_gain=activation_gain, output=self.head[-1],
                     **(init_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(x))


class MLP(Network):
    """Fully connected blocks (linear -> norm -> activation -> dropout) on flattened images."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        hidden: list[int] = [256, 128],  # noqa: B006 - jsonargparse reads the default
        norm: str = "batch",
        norm_groups: int = 4,
        activation: str = "relu",
        dropout: float = 0.1,
        init: str = "kaiming_normal",
        init_kwargs: dict[str, float] | None = None,
        activation_gain: bool = False,
    ):
        """
        Args:
            input_shape: (channels, height, width), filled in from the data module.
            num_classes: number of outputs, filled in from the data module.
            hidden: width of each hidden layer, e.g. [100, 100, 100, 100].
            norm: normalization after each hidden linear layer: batch, layer, group, none.
            norm_groups: number of groups for norm=group (must divide every hidden width).
            activation: relu, leaky_relu, elu, gelu, silu, tanh or sigmoid.
            dropout: dropout probability after each hidden layer, in [0, 1).
            init: weight initialization scheme (see ConvNet).
            init_kwargs: settings of the init scheme (value, low, high, mean, std, a, gain).
            activation_gain: scale xavier_*/kaiming_* by the activation's gain (torch's
                calculate_gain: sqrt(2) for ReLU-like units, 5/3 for tanh); off, they are the
                textbook Glorot Var 2/(n_in+n_out) and He Var 2/((1+a^2) n_in). The output layer gets gain 1.
        """
        super().__init__()
        shape = check_input(input_shape, num_classes)
        _check_common(hidden, "hidden", dropout, norm, activation, init)
        features = math.prod(shape)
        blocks: list[nn.Module] = []
        for out in hidden:
            norm_layer = make_norm(norm, out, 1, norm_groups)
            blocks.append(nn.Sequential(nn.Linear(features, out, bias=not _is_affine_norm(norm_layer)), norm_layer,
                                        make_activation(activation), nn.Dropout(dropout)))
            features = out
        self.flatten = nn.Flatten()
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(features, num_classes)
        init_weights(self, init, activation=activation, activation_gain=activation_gain, output=self.head,
                     **(init_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
