"""A network built for the data: its constructor met where it is, its memory measured first.

``model.net`` is a class or a function (ConvNet, a user's ``nn.Module``, timm's ``resnet18``);
``build_network`` gives it the data's ``input_shape`` and ``num_classes`` by the names it takes,
measures it on the meta device before any memory is used, and sizes its lazy layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from project import memory
from project.errors import SettingError, class_name, fail, first_line
from project.model.nn import network_class
from project.model.zoo import from_library


def build_network(net, input_shape: tuple[int, int, int], num_classes: int,
                  config=None) -> tuple[nn.Module, memory.NetworkMemory | None]:
    """The network and its memory needs, measured first on the meta device (no memory used): a
    network whose parameters alone would not fit in this machine's memory stops with its settings
    named, not with an allocation failure minutes later. A constructor of the user's own that
    raises is one line naming the class."""
    net = from_library(net)  # timm.models.resnet18 -> Timm(name="resnet18")
    make = _for_the_data(net, input_shape, num_classes)
    target = network_class(net)
    try:
        needs = memory.measure(make, input_shape)
        memory.check_weights(needs, network_settings(config if isinstance(config, dict) else net))
        return _materialized(make(), input_shape), needs
    except SettingError as err:
        raise err if err.setting.startswith("model.") else err.within("model.net") from None
    except Exception as err:
        if target.__module__.startswith("project."):
            raise
        first = first_line(err)
        path = f"{target.__module__}.{target.__qualname__}"
        fail("model.net", path, f"a constructor that takes the data's shape and classes by the names input_shape "
             f"and num_classes, and settings it accepts (--model.net.help {path} lists them)",
             f"raised {type(err).__name__} while being built: {first[:300]}")


def _for_the_data(net, input_shape: tuple[int, int, int], num_classes: int) -> Callable[[], nn.Module]:
    """The network's constructor met where it is: ``input_shape`` and ``num_classes`` by name where it
    names them (in any order, either or neither: a timm-style ``__init__(self, num_classes=10)``
    gets num_classes; a class with neither gets neither, and the dry run checks its output's width).
    A class never gets them by position (``nn.Linear(in_features, out_features)`` would take the
    shape as its in_features); a function given from Python (``lambda shape, classes: ...``) does."""
    import inspect

    target = network_class(net)
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin or C-extension callable: by name
        parameters = {"input_shape": None, "num_classes": None}
    takes_any = any(getattr(p, "kind", None) is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    wanted = {k: v for k, v in (("input_shape", input_shape), ("num_classes", num_classes))
              if k in parameters or takes_any}
    if not wanted and not inspect.isclass(target):
        return lambda: net(input_shape, num_classes)
    return lambda: net(**wanted)


def _materialized(net: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module:
    """Lazy layers (nn.LazyLinear, nn.LazyConv2d ...) take their sizes from one zero batch, in eval
    mode, so channels_last, the optimizer and the checkpoints see real weights."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in net.parameters()):
        training = net.training
        net.eval()
        try:
            with torch.no_grad():
                net(torch.zeros(2, *input_shape))
        except Exception as err:
            fail("model.net", class_name(type(net)), f"a network whose lazy layers take a batch of shape {(2, *input_shape)}",
                 f"raised {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
        finally:
            net.train(training)
    return net


def network_settings(net) -> str:
    """``ConvNet(widths=[...], hidden=...)``: the settings that make a network large."""
    if isinstance(net, dict):  # the config the CLI records in hparams
        name, args = str(net.get("class_path", "")).rsplit(".", 1)[-1], net.get("init_args") or {}
    else:
        name, args = callable_name(net), getattr(net, "keywords", None) or {}
    settings = {k: v for k, v in args.items() if k in ("widths", "hidden")}
    return f"{name}({', '.join(f'{k}={v}' for k, v in settings.items())})"


def callable_name(fn) -> str:
    """A class's or function's name, through functools.partial."""
    fn = getattr(fn, "func", fn)  # functools.partial
    return getattr(fn, "__qualname__", None) or type(fn).__name__
