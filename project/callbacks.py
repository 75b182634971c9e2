"""Our own callbacks: the L1/L2 weight penalty and the non-finite loss guard.

Early stopping, checkpoints and learning-rate logging are Lightning's own (configs/default.yaml).
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

PENALIZED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class WeightPenalty(Callback):
    """Adds the gradient of ``l1 * sum(|w|) + l2 * sum(w**2)`` to the weights' gradients.

    Applied in ``on_before_optimizer_step``, once per optimizer step, on gradients that are already
    accumulated, all-reduced across devices and unscaled by the mixed-precision scaler; so the result
    equals adding the penalty to the loss, without running it through autocast or the scaler. Unlike
    decoupled weight decay (AdamW), the L2 gradient passes through the optimizer's adaptive scaling.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, include_bias_and_norm: bool = False):
        """
        Args:
            l1: coefficient of sum(|w|) (lasso; drives weights to exactly zero), >= 0.
            l2: coefficient of sum(w**2) (ridge; no 1/2 factor, so the gradient is 2 * l2 * w), >= 0.
            include_bias_and_norm: penalize biases and normalization parameters too; by default only
                the weights of conv and linear layers are penalized.
        """
        for name, value in (("l1", l1), ("l2", l2)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"WeightPenalty.{name}={value} must be a finite number >= 0")
        self.l1, self.l2 = float(l1), float(l2)
        self.include_bias_and_norm = include_bias_and_norm
        self._params: list[nn.Parameter] = []

    @property
    def active(self) -> bool:
        return self.l1 > 0 or self.l2 > 0

    def penalized_parameters(self, module: nn.Module) -> list[nn.Parameter]:
        if self.include_bias_and_norm:
            return [p for p in module.parameters() if p.requires_grad]
        return [m.weight for m in module.modules()
                if isinstance(m, PENALIZED_LAYERS) and m.weight.requires_grad]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._params = self.penalized_parameters(pl_module) if self.active else []

    def penalty(self) -> torch.Tensor:
        """The penalty's value for the current weights."""
        with torch.no_grad():
            total = sum(self.l1 * w.abs().sum() + self.l2 * w.pow(2).sum() for w in self._params)
        return torch.as_tensor(total, dtype=torch.float32)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        if not self.active:
            return
        with torch.no_grad():
            for w in self._params:
                if w.grad is None:
                    continue
                if self.l1:
                    w.grad.add_(torch.sign(w), alpha=self.l1)
                if self.l2:
                    w.grad.add_(w, alpha=2.0 * self.l2)
        pl_module.log("train/penalty", self.penalty().to(pl_module.device), on_step=True, on_epoch=False)

    def state_dict(self) -> dict:
        return {"l1": self.l1, "l2": self.l2, "include_bias_and_norm": self.include_bias_and_norm}

    def load_state_dict(self, state_dict: dict) -> None:
        self.l1, self.l2 = state_dict["l1"], state_dict["l2"]
        self.include_bias_and_norm = state_dict["include_bias_and_norm"]


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


class NonFiniteLossGuard(Callback):
    """Stops training at the first NaN or infinite loss, before it reaches the weights.

    It checks the loss before the backward pass and raises, so no optimizer step applies NaN
    gradients and no checkpoint of the broken weights is written: the checkpoints on disk are the
    last good ones. The check costs one host-device sync per step (nothing on a CPU).
    """

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss)):
            return
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or \
            getattr(trainer.checkpoint_callback, "best_model_path", "")
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was saved yet"
        raise NonFiniteLossError(
            f"training loss became {loss.item()} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}); likely causes: a learning rate too high (lower "
            f"model.optimizer.init_args.lr or add model.warmup_steps), a bad initialization "
            f"(model.net.init_args.init), or no normalization; {kept}")
