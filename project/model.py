"""ImageClassifier: the LightningModule that trains a network from ``project.nn``.

The network, optimizer and scheduler are injected as callables (jsonargparse's class_path /
init_args), so ``--model.net=MLP``, ``--model.optimizer=SGD`` or ``--model.scheduler=OneCycleLR``
switch them from the command line and the module still builds them for the data's shape.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.optim.lr_scheduler import CyclicLR, LinearLR, OneCycleLR, ReduceLROnPlateau
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from project.nn import ConvNet, Network, layer_weights
from project.schedules import NOT_CHAINABLE, fill_run_length

NetCallable = Callable[[tuple[int, int, int], int], Network]

# train_clean: a fixed subset of the training split in eval mode, without augmentation (the data
# module's second validation loader): the training accuracy that is comparable with validation's.
STAGES = ("train", "train_clean", "val", "test")
# |w| below this counts as near zero in weights/near_zero_fraction.
NEAR_ZERO = 1e-3

# Schedulers whose period is counted in optimizer steps, not epochs.
STEP_WISE_SCHEDULERS = (OneCycleLR, CyclicLR)


def _callable_name(fn) -> str:
    fn = getattr(fn, "func", fn)  # functools.partial
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=3e-3)


class ImageClassifier(LightningModule):
    """Cross-entropy classifier with per-stage accuracy, the train-minus-val gap, and bias and variance.

    Bias and variance are the lecture's: bias = human-level accuracy - training accuracy (the
    avoidable bias; with human_accuracy 1.0 it is the training error), variance = training
    accuracy - validation accuracy. The training accuracy in both is the clean one (eval mode, no
    augmentation), so dropout and augmentation do not make the training set look harder than it is.
    """

    def __init__(
        self,
        net: Optional[NetCallable] = None,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (1, 8, 8),
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: Optional[LRSchedulerCallable] = None,
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.1,
        channels_last: bool = True,
        compile: bool = False,
        human_accuracy: float = 1.0,
        diagnosis_tolerance: float = 0.02,
    ):
        """
        Args:
            net: the network: ConvNet or MLP with their settings (input_shape and num_classes are
                filled in from the data module); null means ConvNet with its defaults.
            num_classes: number of classes, linked from the data module.
            input_shape: (channels, height, width), linked from the data module.
            label_smoothing: cross-entropy label smoothing in [0, 1) (Szegedy et al. 2016).
            optimizer: any torch.optim optimizer: SGD (momentum, nesterov), Adagrad, RMSprop, Adam, AdamW ...
            scheduler: any torch.optim.lr_scheduler class; OneCycleLR and CyclicLR step every batch,
                the others every epoch, ReduceLROnPlateau watches val/loss. A length left out
                (CosineAnnealingLR T_max, OneCycleLR total_steps, PolynomialLR/LinearLR total_iters,
                project.schedules.LinearDecay total) is the run's length in epochs (steps for OneCycleLR).
            warmup_steps: linear learning-rate warm-up over this many optimizer steps (0: none),
                multiplied onto schedules that scale the current rate (step, multi-step,
                exponential, multiplicative, cosine, polynomial, linear, plateau); refused with
                those that set the rate from the base rate (LambdaLR, CosineAnnealingWarmRestarts,
                OneCycleLR, CyclicLR), where it would overshoot.
            warmup_start_factor: the fraction of the learning rate the warm-up starts from, in (0, 1].
            channels_last: use the channels-last memory format (convolutions measured faster on CPU
                and on GPUs with mixed precision; see make bench).
            compile: compile the network with torch.compile.
            human_accuracy: human-level (or best achievable) accuracy in (0, 1]; bias is measured
                from it (diagnosis/bias = human_accuracy - clean training accuracy).
            diagnosis_tolerance: bias or variance above this is called high in the run summary's
                diagnosis, in [0, 1).
        """
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing={label_smoothing} must be in [0, 1)")
        if warmup_steps < 0:
            raise ValueError(f"model.warmup_steps={warmup_steps} must be >= 0")
        if not 0.0 < warmup_start_factor <= 1.0:
            raise ValueError(f"model.warmup_start_factor={warmup_start_factor} must be in (0, 1]")
        if not 0.0 < human_accuracy <= 1.0:
            raise ValueError(f"model.human_accuracy={human_accuracy} must be in (0, 1]")
        if not 0.0 <= diagnosis_tolerance < 1.0:
            raise ValueError(f"model.diagnosis_tolerance={diagnosis_tolerance} must be in [0, 1)")
        self.save_hyperparameters()
        for key in ("net", "optimizer", "scheduler"):
            # Through the CLI these are the class_path/init_args config (so the init scheme, the
            # optimizer's lr ... are recorded and a checkpoint re-instantiates the same network);
            # callables given from Python are recorded by name, as they cannot be stored safely.
            if callable(self.hparams[key]):
                self.hparams[key] = _callable_name(self.hparams[key])
        self.net, self.memory = build_network(net or ConvNet, tuple(input_shape), num_classes, self.hparams.net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # Kept out of the module tree so the state dict has each weight once.
        object.__setattr__(self, "_compiled_net", torch.compile(self.net) if compile else None)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._lr: Optional[float] = None
        # One sample, so the model summary can count FLOPs (without it Lightning prints "Total FLOPs: 0").
        self.example_input_array = torch.zeros(1, *input_shape)
        self.needs_run_length = False  # set by _check_optimization
        self._check_optimization()
        # Epoch metrics per stage; no input checks or NaN checks, which cost a device sync per step.
        for stage in STAGES:  # train_acc, train_loss, train_clean_acc, val_acc ...
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # travels in checkpoints, for resumed runs

    @property
    def lr(self) -> Optional[float]:
        """A rate that replaces the optimizer's configured one (None: the configured one). Lightning's
        LearningRateFinder sets it; set during fit, it also moves the running optimizer's rate and
        the schedulers' base rates, so a schedule starts from the found rate, not the configured one."""
        return self._lr

    @lr.setter
    def lr(self, value: Optional[float]) -> None:
        self._lr = value
        trainer = self._trainer
        if value is None or trainer is None:
            return
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = value
                if "initial_lr" in group:
                    group["initial_lr"] = value
        for config in trainer.lr_scheduler_configs:
            if hasattr(config.scheduler, "base_lrs"):
                config.scheduler.base_lrs = [value] * len(config.scheduler.base_lrs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self.net if self._compiled_net is None else self._compiled_net)(x)

    def _step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing if stage == "train" else 0.0)
        # Only metric updates per step: they are logged once at epoch end (_log_epoch), because
        # each self.log call costs about a millisecond of Lightning bookkeeping.
        getattr(self, f"{stage}_loss").update(loss.detach(), len(y))
        getattr(self, f"{stage}_acc").update(logits.detach(), y)
        return loss, logits

    def _log_epoch(self, stage: str) -> None:
        # Logging the metric objects: Lightning computes them (synced across devices), then resets.
        suffix = "_clean" if stage == "train_clean" else ""
        tag = stage.removesuffix("_clean")
        self.log(f"{tag}/loss{suffix}", getattr(self, f"{stage}_loss"), prog_bar=stage == "val",
                 add_dataloader_idx=False)
        self.log(f"{tag}/acc{suffix}", getattr(self, f"{stage}_acc"), prog_bar=stage in ("train", "val"),
                 add_dataloader_idx=False)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        # Loader 0 is the validation split, loader 1 the clean training subset (data module).
        # The logits go to callbacks (confusion matrix, misclassified images) without a second pass.
        return self._step(batch, "val" if dataloader_idx == 0 else "train_clean")[1].detach()

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")[1].detach()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # a check that validation runs, not a result: nothing is shown
            for stage in ("val", "train_clean"):
                getattr(self, f"{stage}_acc").reset()
                getattr(self, f"{stage}_loss").reset()
            return
        val_acc = self.val_acc.compute()
        self._log_epoch("val")
        # Values equal on all ranks (validation is not sharded), so sync_dist only averages equals.
        if self.train_clean_acc.update_called:
            clean_acc = self.train_clean_acc.compute()
            self._log_epoch("train_clean")
            # The overfitting signal: how much better the model does on what it trained on, both
            # measured the same way (eval mode, no augmentation), with the same weights.
            self.log_dict({"gap/acc": clean_acc - val_acc,
                           "diagnosis/bias": self.hparams.human_accuracy - clean_acc,
                           "diagnosis/variance": clean_acc - val_acc}, sync_dist=True, add_dataloader_idx=False)
        self.log_dict(weight_statistics(self.net), sync_dist=True, add_dataloader_idx=False)
        self.val_acc_best.update(val_acc)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)  # equal on all ranks

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The metrics of the moment the checkpoint was saved (its epoch's validation, clean train
        # accuracy, gap ...), so a summary of these weights can quote their own figures.
        checkpoint["metrics"] = {name: float(value) for name, value in self.trainer.callback_metrics.items()
                                 if isinstance(value, torch.Tensor) and value.numel() == 1}

    def _check_optimization(self) -> None:
        """Build the optimizer and scheduler once on a stand-in parameter, so a bad lr or
        scheduler setting fails at construction, before any data is loaded."""
        probe = [nn.Parameter(torch.zeros(1))]
        try:
            optimizer = self.optimizer_factory(probe)
        except (ValueError, TypeError) as err:
            raise ValueError(f"model.optimizer: {err}") from None
        for key, value in optimizer.defaults.items():  # torch lets lr=inf or eps=nan through
            values = value if isinstance(value, (tuple, list)) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ValueError(f"model.optimizer.{key}={value}; allowed: finite numbers")
        if self.scheduler_factory is None:
            return
        try:  # any length will do here
            scheduler, self.needs_run_length = self._make_scheduler(optimizer, epochs=100, steps=100)
        except (ValueError, TypeError) as err:
            raise ValueError(f"model.scheduler: {err}") from None
        if self.hparams.warmup_steps and isinstance(scheduler, NOT_CHAINABLE):
            own = {OneCycleLR: " and has its own warm-up (pct_start)", CyclicLR: " and has its own warm-up (base_lr)"}
            raise ValueError(
                f"model.warmup_steps={self.hparams.warmup_steps} cannot be combined with "
                f"{type(scheduler).__name__}, which sets the rate from the base rate{own.get(type(scheduler), '')}: "
                "a warm-up multiplied onto it would overshoot; allowed: 0 with it, or a warm-up with StepLR, MultiStepLR, ExponentialLR, "
                "MultiplicativeLR, CosineAnnealingLR, PolynomialLR, LinearLR or ReduceLROnPlateau")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        schedulers = []
        # One tag for the optimizer's rate, as LearningRateMonitor names it without a scheduler.
        name = f"lr-{type(optimizer).__name__}"
        if self.scheduler_factory is not None:
            if not math.isfinite(self.trainer.num_training_batches):
                self.trainer.fit_loop.setup_data()  # as Trainer.estimated_stepping_batches does
            epochs, steps = self.run_length(self.trainer, self.trainer.num_training_batches)
            # A run without a length (max_epochs=-1) only reaches here with a schedule that needs none.
            scheduler, _ = self._make_scheduler(optimizer, *(int(n) if math.isfinite(n) else 1 for n in (epochs, steps)))
            config = {"scheduler": scheduler, "name": name,
                      "interval": "step" if isinstance(scheduler, STEP_WISE_SCHEDULERS) else "epoch"}
            if isinstance(scheduler, ReduceLROnPlateau):
                config["monitor"] = "val/loss"
            schedulers.append(config)
        if self.hparams.warmup_steps:
            warmup = LinearLR(optimizer, self.hparams.warmup_start_factor, 1.0, self.hparams.warmup_steps)
            # Chained schedulers multiply: the warm-up scales whatever the main schedule sets.
            schedulers.insert(0, {"scheduler": warmup, "interval": "step", "name": name})
        return [optimizer], schedulers

    @staticmethod
    def run_length(trainer, batches: int) -> tuple[float, float]:
        """The run's length in epochs and optimizer steps (inf: no limit), as Lightning will count
        them, from ``batches`` training batches an epoch; known before fit starts."""
        per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        max_epochs = math.inf if trainer.max_epochs in (None, -1) else trainer.max_epochs
        steps = min(max_epochs * per_epoch, math.inf if trainer.max_steps == -1 else trainer.max_steps)
        return (math.ceil(steps / per_epoch) if math.isfinite(steps) else math.inf), steps

    def check_schedule(self, epochs: float, steps: float) -> None:
        """Steps the configured schedule through the whole run on a stand-in parameter: a setting
        that crashes it or gives a negative or non-finite rate at any step stops before training."""
        if self.scheduler_factory is None:
            return
        optimizer = self.optimizer_factory([nn.Parameter(torch.zeros(1))])
        scheduler, _ = self._make_scheduler(optimizer, *(int(min(n, 10**6)) for n in (epochs, steps)))
        if isinstance(scheduler, ReduceLROnPlateau):  # follows val/loss: nothing to simulate
            return
        name = type(scheduler).__name__
        count = int(min(steps if isinstance(scheduler, STEP_WISE_SCHEDULERS) else epochs, 100_000))
        unit = "step" if isinstance(scheduler, STEP_WISE_SCHEDULERS) else "epoch"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            for done in range(count + 1):
                rates = [group["lr"] for group in optimizer.param_groups]
                if not all(isinstance(r, (int, float)) and math.isfinite(r) and r >= 0 for r in rates):
                    raise ValueError(
                        f"model.scheduler={name} sets the learning rate to {rates[0]} at {unit} {done} of this "
                        f"run; allowed: settings that keep the rate finite and >= 0 through the run's {count} {unit}s")
                if done == count:
                    break
                try:
                    scheduler.step()
                except (ValueError, ArithmeticError) as err:
                    reason = " ".join(str(err).split())
                    raise ValueError(
                        f"model.scheduler={name} fails at {unit} {done + 1} of this run's {count} "
                        f"({type(err).__name__}: {reason}); allowed: settings that last the whole run") from None

    def _make_scheduler(self, optimizer, epochs: int, steps: int):
        """The configured scheduler, its left-out length set to the run's; and whether one was left out."""
        try:
            scheduler = self.scheduler_factory(optimizer)
            missing = False
        except ValueError as err:
            # OneCycleLR needs the run's length when the config does not give it.
            if "total_steps" not in str(err):
                raise
            scheduler, missing = self.scheduler_factory(optimizer, total_steps=steps), True
        return scheduler, fill_run_length(scheduler, epochs) or missing


def machine_memory() -> int:
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class NetworkMemory:
    """Bytes a network needs, measured on the meta device: its parameters, and per sample the
    activations a training step keeps for the backward pass and the largest pair an eval pass holds."""
    parameters: int
    train_per_sample: int
    eval_per_sample: int

    def training(self, batch_size: int) -> int:
        return 4 * self.parameters + batch_size * self.train_per_sample  # weights, gradients, 2 optimizer states

    def evaluation(self, batch_size: int) -> int:
        return self.parameters + batch_size * self.eval_per_sample


def _measure(net: Network, input_shape: tuple[int, int, int]) -> NetworkMemory:
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda m, args, out: sizes.append(out.numel() * out.element_size() // 2))
             for m in net.modules() if not list(m.children())]
    try:
        net(torch.empty(2, *input_shape, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    pairs = [a + b for a, b in zip(sizes, sizes[1:])] or sizes
    return NetworkMemory(sum(p.numel() * p.element_size() for p in net.parameters()), sum(sizes), max(pairs or [0]))


def build_network(net: NetCallable, input_shape: tuple[int, int, int], num_classes: int,
                  config=None) -> tuple[Network, NetworkMemory | None]:
    """The network and its memory needs, measured first on the meta device (no memory used): a
    network whose parameters alone would not fit in this machine's memory stops with its settings
    named, not with an allocation failure minutes later."""
    try:
        with torch.device("meta"):
            memory = _measure(net(input_shape, num_classes), input_shape)
    except ValueError as err:
        raise ValueError(f"model.net.{err}") from None
    except Exception:  # something the meta device cannot run: not measured
        memory = None
    if memory is not None and memory.parameters > machine_memory():
        raise ValueError(
            f"model.net={network_settings(config if isinstance(config, dict) else net)} has {memory.parameters // 4:,} parameters, "
            f"{memory.parameters / 2**30:.1f} GiB of weights alone; allowed: a network whose weights fit in this "
            f"machine's {machine_memory() / 2**30:.1f} GiB of memory (smaller widths or hidden)")
    return net(input_shape, num_classes), memory


def network_settings(net) -> str:
    """``ConvNet(widths=[...], hidden=...)``: the settings that make a network large."""
    if isinstance(net, dict):  # the config the CLI records in hparams
        name, args = str(net.get("class_path", "")).rsplit(".", 1)[-1], net.get("init_args") or {}
    else:
        name, args = _callable_name(net), getattr(net, "keywords", None) or {}
    settings = {k: v for k, v in args.items() if k in ("widths", "hidden")}
    return f"{name}({', '.join(f'{k}={v}' for k, v in settings.items())})"


def weight_statistics(net: nn.Module) -> dict[str, torch.Tensor]:
    """The size of the conv and linear weights: L2 (ridge) shrinks the norm, L1 (lasso) makes exact zeros."""
    with torch.no_grad():
        weights = torch.cat([w.detach().flatten() for w in layer_weights(net)])
        return {"weights/l2_norm": torch.linalg.vector_norm(weights),
                "weights/zero_fraction": (weights == 0).float().mean(),
                "weights/near_zero_fraction": (weights.abs() < NEAR_ZERO).float().mean()}
