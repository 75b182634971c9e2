"""Networks from timm and torchvision as ``model.net``, with the lecture's switches on them.

    --model.net=Timm --model.net.name=resnet18 --model.net.norm=group --model.net.drop_rate=0.2
    --model.net=TorchVision --model.net.name=resnet18 --model.net.init=xavier_normal
    --model.net=timm.models.resnet18               the library's own function: Timm with name=resnet18
    --model.net=torchvision.models.resnet18        likewise TorchVision

The data's classes and channels go in under each library's own names (timm: ``num_classes``,
``in_chans``; torchvision: ``num_classes``, and its 3-channel stem gets a gray image repeated, or a
learned 1x1 conv for other channel counts). Nothing is downloaded by accident: pretrained weights
are off unless asked for, and asked for they are read from the local cache or refused in one line.
A network that cannot take the data's image size (ConvNeXt on 8x8 digits, a ViT's patches) gets
its input resized inside it to the smallest size it takes, said in one note.
"""

from __future__ import annotations

import difflib
import os
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from project.errors import choice, fail, first_line
from project.model.nn import INITS, NORMS, Network, check_input, init_weights, layer_weights, network_class

# Sizes tried, in order, for a network that cannot take the data's own.
SIZES = (16, 32, 64, 96, 128, 160, 224)


def _norm_layer(norm: str, groups: int):
    """A ``norm_layer(channels)`` factory from project.model.nn's registry, as timm's and
    torchvision's ResNets call it."""
    make = choice(NORMS, "norm", norm)
    return lambda channels, **kw: make(channels, 2, groups)


def _on_meta() -> bool:
    return torch.empty(0).is_meta


class LibraryNet(Network):
    """What Timm and TorchVision share: the input adapter and resize, the size probe, init."""

    library = ""

    def _finish(self, name: str, init: str, input_size) -> None:
        self.size = tuple(input_size) if input_size is not None else None
        self.init_scheme = init
        if init != "default":
            init_weights(self.net, init)
            self.notes.append(f"note: model.net: init={init} re-initialized {len(layer_weights(self.net))} conv and linear weight "
                  f"tensors of {self.library} {name}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.net(self.adapt(x))

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _fits(build, channels: int, size: tuple[int, int], failures: list | None = None, adapt=None) -> nn.Module | None:
    """The network built for ``size``, or None (the reason added to ``failures``) where it cannot
    take images of that size (fed through ``adapt``, the wrapper's own input adapter, where given)."""
    try:
        net = build(size)
        net.eval()
        with torch.no_grad():
            x = torch.zeros(1, channels, *size)
            net(adapt(x) if adapt else x)
        net.train()
        return net
    except (RuntimeError, ValueError, AssertionError, IndexError, ZeroDivisionError) as err:
        if isinstance(err, ValueError) and type(err).__name__ == "SettingError":
            raise
        if failures is not None:
            failures.append(first_line(err, type(err).__name__))
        return None


def _build_for_size(build, input_shape, input_size, library: str, name: str, notes: list[str], adapt=None):
    """(network, size it is fed): the data's size where the network takes it, else the smallest of
    SIZES it takes (the input resized inside the wrapper), else one line."""
    channels, height, width = input_shape
    if input_size is not None:
        net = _fits(build, channels, tuple(input_size), adapt=adapt)
        if net is None:
            fail("input_size", list(input_size), "a size this network takes", f"is too small for {library} {name}")
        return net, tuple(input_size)
    failures: list[str] = []
    net = _fits(build, channels, (height, width), failures, adapt)
    if net is not None:
        return net, None
    for size in SIZES:
        if size > min(height, width):
            net = _fits(build, channels, (size, size), failures, adapt)
            if net is not None:
                notes.append(f"note: model.net: {library} {name} cannot take {height}x{width} images; they are resized to "
                      f"{size}x{size} inside it (model.net.input_size sets another size; data.image_size resizes an "
                      f"image folder once, when it is read)")
                return net, (size, size)
    fail("input_size", None, f"a size in {SIZES[0]}..{SIZES[-1]} this network takes",
         f"finds none: {library} {name} failed on every size tried (at {SIZES[-1]}x{SIZES[-1]}: {failures[-1][:200]})")


class Timm(LibraryNet):
    """A timm model (``timm.create_model``) for the data's classes and channels."""

    library = "timm"

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, name: str = "resnet18",
                 pretrained: bool = False, drop_rate: float = 0.0, norm: str | None = None, norm_groups: int = 8,
                 init: str = "default", input_size: tuple[int, int] | None = None, options: dict | None = None):
        """
        Args:
            input_shape: (channels, height, width), filled in from the data module.
            num_classes: number of classes, filled in from the data module.
            name: the timm model (``timm.list_models()``): resnet18, mobilenetv3_small_050, convnext_atto,
                vit_tiny_patch16_224 ...
            pretrained: timm's pretrained weights, read from the local Hugging Face cache only (never
                downloaded here); the classifier and stem are adapted by timm.
            drop_rate: dropout before the classifier (timm's drop_rate), in [0, 1).
            norm: the normalization of every block (batch, group, layer, instance, none) where the
                constructor takes a norm_layer (ResNets); null: the network's own.
            norm_groups: groups for norm=group.
            init: re-initialize every conv and linear weight (project.model.nn.INITS); default: timm's own.
            input_size: [height, width] the images are resized to inside the network; null: the data's
                size, or the smallest size the network takes.
            options: more keyword arguments for timm.create_model, e.g. {drop_path_rate: 0.1}.
        """
        super().__init__()
        self.notes: list[str] = []  # said by the CLI once every check passed, so an error stays the only line
        import timm

        channels, _, _ = check_input(input_shape, num_classes)
        if name not in timm.list_models():
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            fail("name", name, "a timm model name (python -c 'import timm; print(timm.list_models())')",
                 "is not known" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if not 0.0 <= drop_rate < 1.0:
            fail("drop_rate", drop_rate, "a number in [0, 1)")
        choice(INITS, "init", init)
        kwargs = {"num_classes": num_classes, "in_chans": channels, "drop_rate": drop_rate, **(options or {})}
        if norm is not None:
            kwargs["norm_layer"] = _norm_layer(norm, norm_groups)
        if pretrained:
            kwargs["pretrained_cfg_overlay"] = {"file": _timm_cached(name)}
        self.net, size = _build_for_size(partial(self._create, name, pretrained, kwargs, norm), input_shape, input_size,
                                         "timm", name, self.notes)
        self._finish(name, init, size)

    @staticmethod
    def _create(name: str, pretrained: bool, kwargs: dict, norm: str | None, size: tuple[int, int]) -> nn.Module:
        import timm

        try:
            return timm.create_model(name, pretrained=pretrained and not _on_meta(), img_size=size, **kwargs)
        except TypeError as err:
            if "img_size" in str(err):  # a network that takes any size (a CNN): no img_size to give
                try:
                    return timm.create_model(name, pretrained=pretrained and not _on_meta(), **kwargs)
                except TypeError as again:
                    err = again
            if "norm_layer" in str(err):
                fail("norm", norm, "null (the network's own)", f"cannot be set on timm {name}: its constructor "
                     "takes no norm_layer")
            fail("options", kwargs.get("options"), f"keyword arguments timm {name} takes", f"were refused: {err}")


def _timm_cached(name: str) -> str:
    """The pretrained file of timm ``name`` in the local Hugging Face cache; one line where it is not there."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(name)
    repo = getattr(config, "hf_hub_id", None) if config is not None else None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(found, str):
            return found
    fail("pretrained", True, "false, or the weights in the local Hugging Face cache",
         f"would download timm {name}'s weights ({repo or 'no hub id'}) and this project never downloads by accident: "
         "fetch them once where there is a network (huggingface-cli download " + (repo or name) + ")")


class TorchVision(LibraryNet):
    """A torchvision classifier (``torchvision.models.get_model``) for the data's classes and channels."""

    library = "torchvision"

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, name: str = "resnet18",
                 weights: str | None = None, dropout: float | None = None, norm: str | None = None,
                 norm_groups: int = 8, init: str = "default", input_size: tuple[int, int] | None = None,
                 options: dict | None = None):
        """
        Args:
            input_shape: (channels, height, width), filled in from the data module.
            num_classes: number of classes, filled in from the data module.
            name: the torchvision classifier (``torchvision.models.list_models(torchvision.models)``).
            weights: pretrained weights by name (DEFAULT, IMAGENET1K_V1 ...), read from torch's hub
                cache only (never downloaded here); the last linear layer is replaced for num_classes.
            dropout: the classifier's dropout, for the networks whose constructor takes one
                (MobileNet, EfficientNet, VGG ...); null: the network's own.
            norm: the normalization of every block (batch, group, layer, instance, none) where the
                constructor takes a norm_layer (ResNets); null: the network's own.
            norm_groups: groups for norm=group.
            init: re-initialize every conv and linear weight (project.model.nn.INITS); default: torchvision's own.
            input_size: [height, width] the images are resized to inside the network; null: the data's
                size, or the smallest size the network takes.
            options: more keyword arguments for the model's constructor.
        """
        super().__init__()
        self.notes: list[str] = []
        import torchvision

        channels, _, _ = check_input(input_shape, num_classes)
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            fail("name", name, "a torchvision classifier (torchvision.models.list_models(torchvision.models))",
                 "is not known" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if dropout is not None and not 0.0 <= dropout < 1.0:
            fail("dropout", dropout, "a number in [0, 1), or null")
        choice(INITS, "init", init)
        kwargs = dict(options or {})
        if dropout is not None:
            kwargs["dropout"] = dropout
        if norm is not None:
            kwargs["norm_layer"] = _norm_layer(norm, norm_groups)
        loaded = _torchvision_cached(name, weights) if weights is not None else None
        build = partial(self._create, name, num_classes, kwargs, loaded, norm, dropout)
        self.channels = channels
        if channels not in (1, 3):
            self.stem = nn.Conv2d(channels, 3, kernel_size=1)  # a learned mix of the channels into RGB
            self.notes.append(f"note: model.net: torchvision {name} takes 3 channels; a learned 1x1 conv maps the data's {channels}")
        self.net, size = _build_for_size(build, input_shape, input_size, "torchvision", name, self.notes, self.adapt)
        self._finish(name, init, size)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 1:
            return x.expand(-1, 3, -1, -1)  # a gray image as three equal channels
        return self.stem(x) if self.channels != 3 else x

    @staticmethod
    def _create(name, num_classes, kwargs, loaded, norm, dropout, size) -> nn.Module:
        import torchvision

        try:
            net = torchvision.models.get_model(name, weights=None, num_classes=num_classes if loaded is None else 1000,
                                               **kwargs)
        except TypeError as err:
            for key, value in (("norm_layer", norm), ("dropout", dropout)):
                if key in str(err):
                    fail("norm" if key == "norm_layer" else key, value, "null (the network's own)",
                         f"cannot be set on torchvision {name}: its constructor takes no {key}")
            fail("options", kwargs, f"keyword arguments torchvision {name} takes", f"were refused: {err}")
        if loaded is not None and not _on_meta():
            net.load_state_dict(torch.load(loaded, map_location="cpu", weights_only=True))
        if loaded is not None:
            parent, attr, last = _last_linear(net)
            setattr(parent, attr, nn.Linear(last.in_features, num_classes))
        return net


def _last_linear(net: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The last nn.Linear (the classifier) and where it hangs, to replace it for num_classes."""
    found = None
    for module_name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            found = module_name
    parent_name, _, attr = found.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    return parent, attr, getattr(parent, attr)


def _torchvision_cached(name: str, weights: str) -> str:
    """The file of torchvision ``name``'s ``weights`` in torch's hub cache; one line where it is not there."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    if weights not in enum.__members__:
        fail("weights", weights, f"DEFAULT, {', '.join(m for m in enum.__members__ if m != 'DEFAULT')} or null")
    chosen = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(chosen.url)
    if not path.is_file():
        fail("weights", weights, f"null, or the file placed at {path}",
             f"would download {chosen.url} and this project never downloads by accident: fetch it once where "
             "there is a network")
    return str(path)


# The libraries' own functions as model.net (timm.models.resnet18, torchvision.models.resnet18):
# build_network turns them into these wrappers, named by the function.
LIBRARIES = {"timm": Timm, "torchvision": TorchVision}


def from_library(net):
    """``net`` itself, or, for one of timm's or torchvision's model functions, its wrapper with the
    function's name; a library's model class (it needs its blocks spelled out) is one line."""
    target = network_class(net)
    library = (getattr(target, "__module__", "") or "").split(".")[0]
    if library not in LIBRARIES:
        return net
    path = f"{target.__module__}.{getattr(target, '__name__', target)}"
    if isinstance(target, type):
        fail("model.net", path, f"a model function such as {library}.models.resnet18, or "
             f"--model.net={LIBRARIES[library].__name__} --model.net.name=<model>",
             "is a class whose constructor needs its blocks spelled out")
    return partial(LIBRARIES[library], name=net.__name__)
