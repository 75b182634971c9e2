"""One batch through the network before any work: a network that cannot train on this data is one
line, not a traceback after the Trainer made a log folder, and never a silent run.

After the data is read and before any log folder exists, two training images go through the
network on the CPU in eval mode (no gradient, batch norm on its running statistics, the weights
left as they are; lazy layers are materialized). A forward that raises, an output that is not
[batch, num_classes] (a head of 13 outputs for 10 classes would otherwise train silently: cross
entropy accepts it), integers or probabilities where logits belong (a softmax before cross
entropy trains, badly), a non-finite loss, or images of another shape than the data module says
each stop with one line naming the network, what was expected and what came.

Then the same two images go through once in training mode with a backward pass, as training will:
a forward that fails only there (dropout, batch norm on batch statistics, a branch on
self.training), a network with nothing to train (no parameters, all frozen) or an output cut off
from its weights (.detach(), a numpy round trip) each stop with one line too. That pass leaves
nothing behind: the random streams, batch norm's running statistics and the gradients are put
back as they were.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from project.errors import fail, first_line

_WHERE = "where to fix it: the network's forward"


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
        first = first_line(err)
        fail("model.net", name, f"a network whose forward takes a batch of shape {tuple(images.shape)} "
             f"([batch, {', '.join(map(str, expected))}])", f"raised {type(err).__name__} on one: {first[:300]}")
    finally:
        net.train(training)
    classes = model.hparams.num_classes
    if not isinstance(out, torch.Tensor) or out.shape != (len(images), classes):
        came = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        fail("model.net", name, f"an output of shape [batch, num_classes] = [{len(images)}, {classes}] (one logit "
             f"per class of the data)", f"returned {came} for a batch of {len(images)}")
    if not out.is_floating_point():
        fail("model.net", name, "floating-point logits, one per class (cross entropy takes scores, not class "
             "numbers)", f"returned {out.dtype} values")
    if bool(((out >= 0) & (out <= 1)).all()) and torch.allclose(out.float().sum(1), torch.ones(len(out)), atol=1e-4):
        fail("model.net", name, "logits (scores before any softmax: cross entropy applies its own; drop the "
             "network's last softmax)", "returned probabilities (each row sums to 1)")
    loss = F.cross_entropy(out.float(), labels)
    if not torch.isfinite(loss):
        fail("model.net", name, "a network whose untrained output gives a finite loss",
             f"gives a loss of {loss.item()} on its first batch (an output of {out.abs().max().item():.3g} at most)")
    _training_pass(net, name, images, labels)


def _training_pass(net: torch.nn.Module, name: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One forward and backward in training mode, undone afterwards (see the module's text)."""
    trainable = [p for p in net.parameters() if p.requires_grad]
    if not trainable:
        fail("model.net", name, "a network with parameters to train (requires_grad=True)",
             f"has {'no parameters' if not list(net.parameters()) else 'every parameter frozen'}: nothing to train")
    buffers = [b.detach().clone() for b in net.buffers()]
    grads = [p.grad for p in trainable]
    training = net.training
    net.train()
    try:
        with torch.random.fork_rng(devices=[]):
            try:
                out = net(images)
            except Exception as err:
                first = first_line(err)
                fail("model.net", name, f"a network whose forward works in training mode too ({_WHERE})",
                     f"raised {type(err).__name__} in training mode: {first[:300]}")
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                fail("model.net", name, f"an output computed from its weights, so training can change it ({_WHERE}: "
                     "no .detach(), .item() or numpy in it)", "returned an output with no gradient in training mode")
            F.cross_entropy(out.float(), labels).backward()
    finally:
        net.train(training)
        with torch.no_grad():
            for buffer, saved in zip(net.buffers(), buffers):
                buffer.copy_(saved)
        for p, grad in zip(trainable, grads):
            p.grad = grad
