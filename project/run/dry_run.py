"""One batch through the network before any work: a network that cannot train on this data is one
line, not a traceback after the Trainer made a log folder, and never a silent run.

After the data is read and before any log folder exists, two training images go through the
network on the CPU in eval mode (no gradient, batch norm on its running statistics, the weights
left as they are; lazy layers are materialized). A forward that raises, an output that is not
[batch, num_classes] (a head of 13 outputs for 10 classes would otherwise train silently: cross
entropy accepts it), a non-finite loss, or images of another shape than the data module says each
stop with one line naming the network, what was expected and what came.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from project.errors import fail


def _network_name(net: torch.nn.Module) -> str:
    inner = getattr(net, "net", None)  # project.model.zoo's wrappers: the library's own class
    kind = type(net)
    return f"{kind.__module__}.{kind.__qualname__}" + (f" ({type(inner).__name__})" if isinstance(inner, torch.nn.Module) else "")


def dry_run(model, images: torch.Tensor, labels: torch.Tensor) -> None:
    """``images``: a few prepared (normalized, float) training images; ``labels`` their classes."""
    net, expected = model.net, tuple(model.hparams.input_shape)
    name = _network_name(net)
    if tuple(images.shape[1:]) != expected:
        fail("data.input_shape", expected, f"the shape of the images the data module gives, {tuple(images.shape[1:])}",
             "differs from its images")
    training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(images)
    except Exception as err:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        fail("model.net", name, f"a network whose forward takes a batch of shape {tuple(images.shape)} "
             f"([batch, {', '.join(map(str, expected))}])", f"raised {type(err).__name__} on one: {first[:300]}")
    finally:
        net.train(training)
    classes = model.hparams.num_classes
    if not isinstance(out, torch.Tensor) or out.shape != (len(images), classes):
        came = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        fail("model.net", name, f"an output of shape [batch, num_classes] = [{len(images)}, {classes}] (one logit "
             f"per class of the data)", f"returned {came} for a batch of {len(images)}")
    loss = F.cross_entropy(out.float(), labels)
    if not torch.isfinite(loss):
        fail("model.net", name, "a network whose untrained output gives a finite loss",
             f"gives a loss of {loss.item()} on its first batch (an output of {out.abs().max().item():.3g} at most)")
