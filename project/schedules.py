"""Learning-rate schedules that follow the run, and named schedule functions for LambdaLR/MultiplicativeLR.

A schedule's length (CosineAnnealingLR's ``T_max``, OneCycleLR's ``total_steps`` ...) left out of
the config is the run's own length, taken from the trainer when the optimizer is built: with
``--trainer.max_epochs=3`` a cosine schedule ends at its minimum after epoch 3, not 79% of the
way down a 30-epoch curve. LambdaLR and MultiplicativeLR take a function, which YAML cannot
write; the classes here are those functions by name:

    scheduler:
      class_path: torch.optim.lr_scheduler.LambdaLR
      init_args:
        lr_lambda: {class_path: project.schedules.ExponentialDecay, init_args: {factor: 0.95}}
"""

from __future__ import annotations

import inspect
import math
from typing import Optional

from torch.optim import lr_scheduler

# Each scheduler's length argument and the unit it counts in, filled in from the trainer when None.
RUN_LENGTH = {
    lr_scheduler.CosineAnnealingLR: "T_max",
    lr_scheduler.PolynomialLR: "total_iters",
    lr_scheduler.LinearLR: "total_iters",
}

# Schedulers that set the rate from the base rate (closed form) instead of scaling the current one:
# a warm-up multiplied onto them would compound with their own formula and overshoot.
NOT_CHAINABLE = (lr_scheduler.LambdaLR, lr_scheduler.CosineAnnealingWarmRestarts, lr_scheduler.OneCycleLR,
                 lr_scheduler.CyclicLR, lr_scheduler.SequentialLR)


def _make_length_optional() -> None:
    """Declare the length arguments optional (default None) in the signatures jsonargparse reads.

    torch requires ``T_max``; jsonargparse would then refuse a config that leaves it out, before
    the model could fill it in. Only the signature seen by ``inspect`` changes, not the behaviour.
    """
    for cls, name in RUN_LENGTH.items():
        init = cls.__init__
        signature = inspect.signature(init)
        parameters = [p.replace(default=None, annotation=Optional[int]) if p.name == name else p
                      for p in signature.parameters.values()]
        init.__signature__ = signature.replace(parameters=parameters)


_make_length_optional()


def fill_run_length(scheduler, epochs: int) -> bool:
    """Set every length the config left out to the run's ``epochs``; True if one was missing."""
    missing = False
    for cls, name in RUN_LENGTH.items():
        if isinstance(scheduler, cls) and getattr(scheduler, name) is None:
            setattr(scheduler, name, epochs)
            missing = True
    for fn in getattr(scheduler, "lr_lambdas", []):
        if isinstance(fn, LinearDecay) and fn.total is None:
            fn.total = epochs
            missing = True
    return missing


def _check(name: str, value: float, ok: bool, allowed: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
        raise ValueError(f"{name}={value} must be {allowed}")


class ExponentialDecay:
    """``factor ** epoch``: with LambdaLR, the rate at epoch t is lr * factor^t (like ExponentialLR)."""

    def __init__(self, factor: float = 0.95):
        """
        Args:
            factor: the rate's multiplier per epoch, in (0, 1].
        """
        _check("ExponentialDecay.factor", factor, 0 < factor <= 1, "in (0, 1]")
        self.factor = float(factor)

    def __call__(self, epoch: int) -> float:
        return self.factor ** epoch


class ConstantFactor:
    """Always ``factor``: with MultiplicativeLR, the rate is multiplied by it after every epoch."""

    def __init__(self, factor: float = 0.95):
        """
        Args:
            factor: the multiplier applied each epoch, in (0, 1].
        """
        _check("ConstantFactor.factor", factor, 0 < factor <= 1, "in (0, 1]")
        self.factor = float(factor)

    def __call__(self, epoch: int) -> float:
        return self.factor


class LinearDecay:
    """From 1 down to ``end`` in a straight line over ``total`` epochs, then ``end``."""

    def __init__(self, total: Optional[int] = None, end: float = 0.0):
        """
        Args:
            total: epochs of the decay; null: the run's max_epochs.
            end: the final fraction of the rate, in [0, 1].
        """
        if total is not None:
            _check("LinearDecay.total", total, total >= 1, "a positive number of epochs or null (the run's length)")
        _check("LinearDecay.end", end, 0 <= end <= 1, "in [0, 1]")
        self.total, self.end = total, float(end)

    def __call__(self, epoch: int) -> float:
        if epoch == 0:  # LambdaLR asks once at construction, before the model sets the run's length
            return 1.0
        if self.total is None:
            raise ValueError("LinearDecay.total is null and no trainer filled in the run's length")
        return 1.0 - (1.0 - self.end) * min(epoch, self.total) / self.total


class StepDecay:
    """``gamma ** (epoch // step_size)``: the rate drops by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int = 10, gamma: float = 0.1):
        """
        Args:
            step_size: epochs between drops, >= 1.
            gamma: the multiplier at each drop, in (0, 1].
        """
        _check("StepDecay.step_size", step_size, step_size >= 1, ">= 1")
        _check("StepDecay.gamma", gamma, 0 < gamma <= 1, "in (0, 1]")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)
