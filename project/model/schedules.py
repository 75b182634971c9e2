"""Everything a learning-rate schedule needs: its length from the run, how it steps, warm-up, its rules.

Which schedulers step per batch (``STEP_WISE``) and which cannot take a warm-up (``NOT_CHAINABLE``)
is known here and nowhere else; the model asks this module for its Lightning scheduler configs.

A schedule's length (CosineAnnealingLR's ``T_max``, OneCycleLR's ``total_steps`` ...) left out of
the config is the run's own length, taken from the trainer when the optimizer is built: with
``--trainer.max_epochs=3`` a cosine schedule ends at its minimum after epoch 3, not 79% of the
way down a 30-epoch curve. LambdaLR and MultiplicativeLR take a function, which YAML cannot
write; the classes here are those functions by name:

    scheduler:
      class_path: torch.optim.lr_scheduler.LambdaLR
      init_args:
        lr_lambda: {class_path: project.model.schedules.ExponentialDecay, init_args: {factor: 0.95}}
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Optional

import torch
from torch import nn
from torch.optim import lr_scheduler

from project.errors import SettingError, fail, is_finite_number

# Each scheduler's length argument and the unit it counts in, filled in from the trainer when None.
RUN_LENGTH = {
    lr_scheduler.CosineAnnealingLR: "T_max",
    lr_scheduler.PolynomialLR: "total_iters",
    lr_scheduler.LinearLR: "total_iters",
}

# Schedulers whose period is counted in optimizer steps, not epochs: they step every batch.
STEP_WISE = (lr_scheduler.OneCycleLR, lr_scheduler.CyclicLR)

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
    if not (is_finite_number(value) and ok):
        fail(name, value, allowed)


class ExponentialDecay:
    """``factor ** epoch``: with LambdaLR, the rate at epoch t is lr * factor^t (like ExponentialLR)."""

    def __init__(self, factor: float = 0.95):
        """
        Args:
            factor: the rate's multiplier per epoch, in (0, 1].
        """
        _check("ExponentialDecay.factor", factor, 0 < factor <= 1, "a number in (0, 1]")
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
        _check("ConstantFactor.factor", factor, 0 < factor <= 1, "a number in (0, 1]")
        self.factor = float(factor)

    def __call__(self, epoch: int) -> float:
        return self.factor


class LinearDecay:
    """From 1 down to ``end`` in a straight line over ``total`` epochs, then ``end``."""

    def __init__(self, total: int | None = None, end: float = 0.0):
        """
        Args:
            total: epochs of the decay; null: the run's max_epochs.
            end: the final fraction of the rate, in [0, 1].
        """
        if total is not None:
            _check("LinearDecay.total", total, total >= 1, "a positive number of epochs or null (the run's length)")
        _check("LinearDecay.end", end, 0 <= end <= 1, "a number in [0, 1]")
        self.total, self.end = total, float(end)

    def __call__(self, epoch: int) -> float:
        if epoch == 0:  # LambdaLR asks once at construction, before the model sets the run's length
            return 1.0
        if self.total is None:
            fail("LinearDecay.total", None, "a number of epochs, or a trainer that fills in the run's length")
        return 1.0 - (1.0 - self.end) * min(epoch, self.total) / self.total


class StepDecay:
    """``gamma ** (epoch // step_size)``: the rate drops by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int = 10, gamma: float = 0.1):
        """
        Args:
            step_size: epochs between drops, >= 1.
            gamma: the multiplier at each drop, in (0, 1].
        """
        _check("StepDecay.step_size", step_size, step_size >= 1, "an integer >= 1")
        _check("StepDecay.gamma", gamma, 0 < gamma <= 1, "a number in (0, 1]")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)


# --- the schedule of a run -------------------------------------------------------------------------

SchedulerFactory = Callable[..., object]


def make_scheduler(factory: SchedulerFactory, optimizer, epochs: int, steps: int):
    """The configured scheduler, its left-out length set to the run's; and whether one was left out."""
    try:
        scheduler = factory(optimizer)
        missing = False
    except ValueError as err:
        # OneCycleLR needs the run's length when the config does not give it.
        if "total_steps" not in str(err):
            raise
        scheduler, missing = factory(optimizer, total_steps=steps), True
    return scheduler, fill_run_length(scheduler, epochs) or missing


def check_scheduler(factory: SchedulerFactory, optimizer, warmup_steps: int) -> bool:
    """Builds the scheduler once (any length will do) so a bad setting fails at construction; a
    warm-up with a scheduler that sets the rate itself is refused. True if it needs the run's length."""
    try:
        scheduler, needs_length = make_scheduler(factory, optimizer, epochs=100, steps=100)
    except SettingError as err:
        raise err.within("model.scheduler") from None
    except (ValueError, TypeError) as err:
        fail("model.scheduler", _name(factory), "settings torch accepts", f"fails ({' '.join(str(err).split())})")
    if warmup_steps and isinstance(scheduler, NOT_CHAINABLE):
        own = {lr_scheduler.OneCycleLR: " and has its own warm-up (pct_start)",
               lr_scheduler.CyclicLR: " and has its own warm-up (base_lr)"}
        fail("model.warmup_steps", warmup_steps, "0 with it, or a warm-up with StepLR, MultiStepLR, ExponentialLR, "
             "MultiplicativeLR, CosineAnnealingLR, PolynomialLR, LinearLR or ReduceLROnPlateau",
             f"cannot be combined with {type(scheduler).__name__}, which sets the rate from the base rate"
             f"{own.get(type(scheduler), '')}: a warm-up multiplied onto it would overshoot")
    return needs_length


def _name(factory) -> str:
    fn = getattr(factory, "func", factory)
    return getattr(fn, "__name__", type(fn).__name__)


def run_length(trainer, batches: int) -> tuple[float, float]:
    """The run's length in epochs and optimizer steps (inf: no limit), as Lightning will count them,
    from ``batches`` training batches an epoch; known before fit starts."""
    per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    max_epochs = math.inf if trainer.max_epochs in (None, -1) else trainer.max_epochs
    steps = min(max_epochs * per_epoch, math.inf if trainer.max_steps == -1 else trainer.max_steps)
    return (math.ceil(steps / per_epoch) if math.isfinite(steps) else math.inf), steps


def check_schedule(factory: SchedulerFactory, optimizer_factory, epochs: float, steps: float) -> None:
    """Steps the schedule through the whole run on a stand-in parameter: a setting that crashes it or
    gives a negative or non-finite rate at any step stops before training."""
    optimizer = optimizer_factory([nn.Parameter(torch.zeros(1))])
    scheduler, _ = make_scheduler(factory, optimizer, *(int(min(n, 10**6)) for n in (epochs, steps)))
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):  # follows val/loss: nothing to simulate
        return
    name = type(scheduler).__name__
    unit = "step" if isinstance(scheduler, STEP_WISE) else "epoch"
    count = int(min(steps if unit == "step" else epochs, 100_000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for done in range(count + 1):
            rates = [group["lr"] for group in optimizer.param_groups]
            if not all(is_finite_number(r) and r >= 0 for r in rates):
                fail("model.scheduler", name, f"settings that keep the rate finite and >= 0 through the run's "
                     f"{count} {unit}s", f"sets the learning rate to {rates[0]} at {unit} {done} of this run")
            if done == count:
                break
            try:
                scheduler.step()
            except (ValueError, ArithmeticError) as err:
                fail("model.scheduler", name, "settings that last the whole run", f"fails at {unit} {done + 1} of "
                     f"this run's {count} ({type(err).__name__}: {' '.join(str(err).split())})")


def lightning_schedulers(factory: SchedulerFactory | None, optimizer, epochs: float, steps: float,
                         warmup_steps: int, warmup_start_factor: float, monitor: str) -> list[dict]:
    """Lightning's scheduler configs for this run: the schedule (per step or per epoch, ReduceLROnPlateau
    watching ``monitor``), with a linear warm-up chained before it; one name, so the rate is one curve."""
    name = f"lr-{type(optimizer).__name__}"  # as LearningRateMonitor names the rate without a scheduler
    configs = []
    if factory is not None:
        # A run without a length (max_epochs=-1) only reaches here with a schedule that needs none.
        scheduler, _ = make_scheduler(factory, optimizer, *(int(n) if math.isfinite(n) else 1 for n in (epochs, steps)))
        config = {"scheduler": scheduler, "name": name, "interval": "step" if isinstance(scheduler, STEP_WISE) else "epoch"}
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = monitor
        configs.append(config)
    if warmup_steps:
        warmup = lr_scheduler.LinearLR(optimizer, warmup_start_factor, 1.0, warmup_steps)
        # Chained schedulers multiply: the warm-up scales whatever the main schedule sets.
        configs.insert(0, {"scheduler": warmup, "interval": "step", "name": name})
    return configs
