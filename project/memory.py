"""Memory a network and batch need, measured on PyTorch's meta device before anything is allocated.

A network or batch that cannot fit stops with its settings named, not with an allocation failure
minutes later. On a GPU the need is held against the memory free on it now, not its total.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from project.devices import gpu_facts
from project.errors import fail


def machine_memory() -> int:
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class NetworkMemory:
    """Bytes a network needs: its parameters, and per sample the activations a training step keeps
    for the backward pass and the largest pair an eval pass holds."""
    parameters: int
    train_per_sample: int
    eval_per_sample: int

    def training(self, batch_size: int) -> int:
        return 4 * self.parameters + batch_size * self.train_per_sample  # weights, gradients, 2 optimizer states

    def evaluation(self, batch_size: int) -> int:
        return self.parameters + batch_size * self.eval_per_sample


def measure(make_net, input_shape: tuple[int, int, int]) -> NetworkMemory | None:
    """The network's needs, built and run on the meta device (no memory used); None where the meta
    device cannot run it (a network with data-dependent control flow, say)."""
    try:
        with torch.device("meta"):
            net = make_net()
            sizes: list[int] = []
            hooks = [m.register_forward_hook(lambda m, args, out: sizes.append(out.numel() * out.element_size() // 2))
                     for m in net.modules() if not list(m.children())]
            try:
                net(torch.empty(2, *input_shape, device="meta"))
            finally:
                for hook in hooks:
                    hook.remove()
    except ValueError:
        raise
    except Exception:  # something the meta device cannot run: not measured
        return None
    sizes = [s for s in sizes if isinstance(s, int)]
    pairs = [a + b for a, b in zip(sizes, sizes[1:])] or sizes
    return NetworkMemory(sum(p.numel() * p.element_size() for p in net.parameters()), sum(sizes), max(pairs or [0]))


def check_weights(memory: NetworkMemory | None, described: str) -> None:
    """Weights alone larger than this machine's memory stop before the network is built."""
    if memory is not None and memory.parameters > machine_memory():
        fail("model.net", described, f"a network whose weights fit in this machine's {machine_memory() / 2**30:.1f} "
             "GiB of memory (smaller widths or hidden)", f"has {memory.parameters // 4:,} parameters, "
             f"{memory.parameters / 2**30:.1f} GiB of weights alone")


def available(device: torch.device, fork: bool = False) -> tuple[int, str]:
    """Bytes free where the batches will live, and how to name that place (a GPU is asked from a
    child process when this one will fork its workers)."""
    if device.type == "cuda":
        free = gpu_facts(device.index or 0, fork)["free"]
        return free, f"the free memory of the GPU ({device})"
    return machine_memory(), "this machine's memory"


def check_batches(memory: NetworkMemory | None, described: str, device: torch.device, batch_size: int,
                  eval_batch_size: int, fork: bool = False) -> None:
    """A training or evaluation batch whose activations cannot fit stops before any data is read."""
    if memory is None:
        return
    free, where = available(device, fork)
    for setting, batch, needed in (("data.batch_size", batch_size, memory.training(batch_size)),
                                   ("data.eval_batch_size", eval_batch_size, memory.evaluation(eval_batch_size))):
        if needed > free:
            fail(setting, batch, f"a batch size or network that fits in {where}, {free / 2**30:.1f} GiB",
                 f"with model.net={described} needs about {needed / 2**30:.1f} GiB")
