"""Our own callbacks: the L1/L2 weight penalty and the non-finite loss guard.

Early stopping, checkpoints and learning-rate logging are Lightning's own (configs/default.yaml).
"""

from __future__ import annotations

import sys
from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from project.errors import choice, fail, is_finite_number
from project.model.classifier import PENALTY, TRAIN_LOSS
from project.model.nn import layer_weights

L1_MODES = ("proximal", "subgradient")


class WeightPenalty(Callback):
    """The L2 penalty ``l2 * sum(w**2)`` and the L1 penalty ``l1 * sum(|w|)`` on the weights.

    L2 (and L1 in ``subgradient`` mode) is added to the weights' gradients in
    ``on_before_optimizer_step``, once per optimizer step, on gradients that are already
    accumulated, all-reduced across devices and unscaled by the mixed-precision scaler; so the result
    equals adding the penalty to the loss, without running it through autocast or the scaler. Unlike
    decoupled weight decay (AdamW), the L2 gradient passes through the optimizer's adaptive scaling.

    L1's subgradient ``l1 * sign(w)`` makes a weight oscillate around zero but never land on it.
    The ``proximal`` mode (the default) instead soft-thresholds each weight after every optimizer
    step, ``w <- sign(w) * max(|w| - t, 0)`` (proximal gradient / ISTA, Tibshirani 1996;
    Beck & Teboulle 2009): weights the loss does not hold up become exactly zero, as the lasso
    promises. The threshold ``t`` is the step the optimizer takes for that weight times ``l1``:
    ``lr * l1`` for SGD; ``lr * l1 / (sqrt(v_hat) + eps)`` for Adam-family optimizers (v_hat: the
    bias-corrected second moment), and likewise with RMSprop's and Adagrad's denominators, as in
    preconditioned proximal methods (ProxGen, Yun et al. 2021). Where the subgradient ``l1 *
    sign(w)`` passes through the same scaling, ``l1`` thus has a comparable strength in both modes;
    a plain ``lr * l1`` under Adam would be thousands of times weaker than Adam's own steps.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, l1_mode: Literal["proximal", "subgradient"] = "proximal",
                 include_bias_and_norm: bool = False):
        """
        Args:
            l1: coefficient of sum(|w|) (lasso), >= 0.
            l2: coefficient of sum(w**2) (ridge; no 1/2 factor, so the gradient is 2 * l2 * w), >= 0.
            l1_mode: proximal (soft-threshold after each step by lr * l1: exact zeros) or
                subgradient (add l1 * sign(w) to the gradient: small, never exactly zero, weights).
            include_bias_and_norm: penalize biases and normalization parameters too; by default only
                the weights of conv and linear layers are penalized.
        """
        for name, value in (("l1", l1), ("l2", l2)):
            if not (is_finite_number(value) and value >= 0):
                fail(f"penalty.{name}", value, "a finite number >= 0")
        choice(dict.fromkeys(L1_MODES), "penalty.l1_mode", l1_mode)
        self.l1, self.l2, self.l1_mode = float(l1), float(l2), l1_mode
        self.include_bias_and_norm = include_bias_and_norm
        self._params: list[nn.Parameter] = []
        self._hooks: list = []

    @property
    def active(self) -> bool:
        return self.l1 > 0 or self.l2 > 0

    def penalized_parameters(self, module: nn.Module) -> list[nn.Parameter]:
        if self.include_bias_and_norm:
            return [p for p in module.parameters() if p.requires_grad]
        return [w for w in layer_weights(module) if w.requires_grad]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After any checkpoint was restored: the settings are this run's (see load_state_dict).
        self._params = self.penalized_parameters(pl_module) if self.active else []
        self._remove_hooks()
        if self.l1 and self.l1_mode == "proximal":
            self._hooks = [optimizer.register_step_post_hook(self._soft_threshold) for optimizer in trainer.optimizers]

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove_hooks()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def penalty(self) -> torch.Tensor:
        """The penalty's value for the current weights."""
        with torch.no_grad():
            total = sum(self.l1 * w.abs().sum() + self.l2 * w.pow(2).sum() for w in self._params)
        return torch.as_tensor(total, dtype=torch.float32)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        if not self.active:
            return
        subgradient = self.l1 if self.l1_mode == "subgradient" else 0.0
        with torch.no_grad():
            for w in self._params:
                if w.grad is None:
                    continue
                if subgradient:
                    w.grad.add_(torch.sign(w), alpha=subgradient)
                if self.l2:
                    w.grad.add_(w, alpha=2.0 * self.l2)
        pl_module.log(PENALTY, self.penalty().to(pl_module.device), on_step=True, on_epoch=False)

    def _soft_threshold(self, optimizer, args, kwargs) -> None:
        penalized = {id(w) for w in self._params}
        with torch.no_grad():
            for group in optimizer.param_groups:
                for w in group["params"]:
                    if id(w) in penalized:
                        threshold = group["lr"] * self.l1 / step_denominator(optimizer.state.get(w, {}), group)
                        w.copy_(torch.sign(w) * (w.abs() - threshold).clamp_min_(0))

    def state_dict(self) -> dict:
        return {"l1": self.l1, "l2": self.l2, "l1_mode": self.l1_mode,
                "include_bias_and_norm": self.include_bias_and_norm}

    def load_state_dict(self, state_dict: dict) -> None:
        # A resumed run keeps the settings it was started with now: the command line wins over the
        # checkpoint's, and the penalized parameters are rebuilt at train start.
        saved = {k: state_dict.get(k) for k in ("l1", "l2", "l1_mode", "include_bias_and_norm") if k in state_dict}
        now = {k: v for k, v in self.state_dict().items() if k in saved}
        if saved != now:
            print(f"note: penalty settings {now} replace the checkpoint's {saved}", file=sys.stderr)


def step_denominator(state: dict, group: dict) -> torch.Tensor | float:
    """What the optimizer divides each weight's step by (1 for SGD): Adam's, AdamW's, NAdam's and
    RAdam's sqrt(v / (1 - beta2^t)) + eps, RMSprop's sqrt(square average) + eps, Adagrad's
    sqrt(sum of squares) + eps."""
    if "exp_avg_sq" in state and "betas" in group:
        second = state["max_exp_avg_sq"] if group.get("amsgrad") and "max_exp_avg_sq" in state else state["exp_avg_sq"]
        step = float(state["step"])
        return (second / (1 - group["betas"][1] ** step)).sqrt() + group["eps"]
    if "square_avg" in state:
        average = state["square_avg"]
        if group.get("centered") and "grad_avg" in state:
            average = average - state["grad_avg"] ** 2
        return average.sqrt() + group["eps"]
    if "sum" in state and "lr_decay" in group:
        return state["sum"].sqrt() + group["eps"]
    return 1.0


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
        saved = [getattr(c, "last_model_path", "") for c in trainer.checkpoint_callbacks]
        checkpoint = next((path for path in saved if path), "") or \
            getattr(trainer.checkpoint_callback, "best_model_path", "")
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was saved yet"
        raise NonFiniteLossError(
            f"{TRAIN_LOSS}={loss.item()} at step {trainer.global_step} (epoch {trainer.current_epoch}): training "
            f"stopped before the weights took it in; {kept}; allowed: a finite loss: a lower learning rate "
            "(model.optimizer.init_args.lr) or a warm-up (model.warmup_steps), another initialization "
            "(model.net.init_args.init), or a normalization (model.net.init_args.norm)")
