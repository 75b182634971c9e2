"""ImageClassifier: the LightningModule that trains a network from ``project.model.nn``.

The network, optimizer and scheduler are injected as callables (jsonargparse's class_path /
init_args), so ``--model.net=MLP``, ``--model.optimizer=SGD`` or ``--model.scheduler=OneCycleLR``
switch them from the command line and the module still builds them for the data's shape.
"""

from __future__ import annotations

import math
from typing import Protocol, Union

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from project.data.datamodule import CLEAN_TRAIN_LOADER, TRAINED_LOADER, UNUSED_LOADER
from project.devices import gathered, own_rank
from project.errors import fail, is_finite_number
from project.model.build import build_network, callable_name
from project.model.nn import ConvNet, Network, layer_weights
from project.model.schedules import check_schedule, check_scheduler, lightning_schedulers, run_length


# A network is built for the data's shape and classes: ConvNet or MLP by short name (or any
# project.model.nn.Network), or any torch.nn.Module by its class path. The data fills input_shape
# and num_classes by name where the constructor names them; jsonargparse leaves those two out of
# the settings a user gives or sees (a factory protocol's keyword parameters), and every other
# parameter is the class's own.
class _Networks(Protocol):
    def __call__(self, *, input_shape: tuple[int, int, int], num_classes: int) -> Network: ...


class _Modules(Protocol):
    def __call__(self, *, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module: ...


NetCallable = Union[_Networks, _Modules]

# --- the metric names: logged here, read by every check, view, search and report --------------------
TRAIN_LOSS, TRAIN_ACC = "train/loss", "train/acc"              # running, on augmented batches in train mode
CLEAN_LOSS, CLEAN_ACC = "train/loss_clean", "train/acc_clean"  # a fixed training subset, eval mode, no augmentation
VAL_LOSS, VAL_ACC, VAL_ACC_BEST = "val/loss", "val/acc", "val/acc_best"
TEST_LOSS, TEST_ACC = "test/loss", "test/acc"
# data.test_unused: the training samples train_size leaves out, those with the test split together,
# and the samples trained on (eval mode, no augmentation), all measured by the test
UNUSED_LOSS, UNUSED_ACC, UNSEEN_ACC = "unused/loss", "unused/acc", "unseen/acc"
TRAINED_LOSS, TRAINED_ACC = "trained/loss", "trained/acc"
TEST_METRICS = (TEST_LOSS, TEST_ACC, UNUSED_LOSS, UNUSED_ACC, UNSEEN_ACC, TRAINED_LOSS, TRAINED_ACC)
GAP, BIAS, VARIANCE = "gap/acc", "diagnosis/bias", "diagnosis/variance"
WEIGHT_NORM, ZERO_FRACTION, NEAR_ZERO_FRACTION = "weights/l2_norm", "weights/zero_fraction", "weights/near_zero_fraction"
PENALTY = "train/penalty"  # logged by project.model.callbacks.WeightPenalty when a penalty is on
# What each validation logs (what a search or a pruner can follow), and what needs the clean subset.
PER_VALIDATION = (VAL_LOSS, VAL_ACC, VAL_ACC_BEST, CLEAN_LOSS, CLEAN_ACC, GAP, BIAS, VARIANCE,
                  WEIGHT_NORM, ZERO_FRACTION, NEAR_ZERO_FRACTION)
NEEDS_CLEAN_TRAIN = (CLEAN_LOSS, CLEAN_ACC, GAP, BIAS, VARIANCE)


def fit_metrics(clean_train: bool = True, penalty: bool = False) -> list[str]:
    """The metrics a fit logs once per epoch: what early stopping, checkpoints and a search can watch."""
    names = [TRAIN_LOSS, TRAIN_ACC, *PER_VALIDATION, *([PENALTY] if penalty else [])]
    return sorted(n for n in names if clean_train or n not in NEEDS_CLEAN_TRAIN)


# train_clean: a fixed subset of the training split in eval mode, without augmentation (the data
# module's clean-train validation loader): the training accuracy that is comparable with validation's.
STAGES = ("train", "train_clean", "val", "test", "unused", "trained")
# |w| below this counts as near zero in weights/near_zero_fraction.
NEAR_ZERO = 1e-3


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
        net: NetCallable | None = None,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (1, 8, 8),
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
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
                project.model.schedules.LinearDecay total) is the run's length in epochs (steps for OneCycleLR).
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
        for name, value, ok, allowed in (
                ("label_smoothing", label_smoothing, 0.0 <= label_smoothing < 1.0, "a number in [0, 1)"),
                ("warmup_steps", warmup_steps, warmup_steps >= 0, "an integer >= 0"),
                ("warmup_start_factor", warmup_start_factor, 0.0 < warmup_start_factor <= 1.0, "a number in (0, 1]"),
                ("human_accuracy", human_accuracy, 0.0 < human_accuracy <= 1.0, "a number in (0, 1]"),
                ("diagnosis_tolerance", diagnosis_tolerance, 0.0 <= diagnosis_tolerance < 1.0, "a number in [0, 1)")):
            if not (is_finite_number(value) and ok):
                fail(f"model.{name}", value, allowed)
        self.save_hyperparameters()
        for key in ("net", "optimizer", "scheduler"):
            # Through the CLI these are the class_path/init_args config (so the init scheme, the
            # optimizer's lr ... are recorded and a checkpoint re-instantiates the same network);
            # callables given from Python are recorded by name, as they cannot be stored safely.
            if callable(self.hparams[key]):
                self.hparams[key] = callable_name(self.hparams[key])
        self.net, self.memory = build_network(net or ConvNet, tuple(input_shape), num_classes, self.hparams.net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # Kept out of the module tree so the state dict has each weight once.
        object.__setattr__(self, "_compiled_net", torch.compile(self.net) if compile else None)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._lr: float | None = None
        # One sample, so the model summary can count FLOPs (without it Lightning prints "Total FLOPs: 0").
        self.example_input_array = torch.zeros(1, *input_shape)
        self.needs_run_length = False  # set by _check_optimization
        self._check_optimization()
        # Epoch metrics per stage; no input checks or NaN checks, which cost a device sync per step.
        for stage in STAGES:  # train_acc, train_loss, train_clean_acc, val_acc ...
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self.unseen_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)  # test + unused
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # travels in checkpoints, for resumed runs

    @property
    def lr(self) -> float | None:
        """A rate that replaces the optimizer's configured one (None: the configured one). Lightning's
        LearningRateFinder sets it; set during fit, it also moves the running optimizer's rate and
        the schedulers' base rates, so a schedule starts from the found rate, not the configured one."""
        return self._lr

    @lr.setter
    def lr(self, value: float | None) -> None:
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

    # Each stage's (loss, accuracy) metric names.
    STAGE_METRICS = {"train": (TRAIN_LOSS, TRAIN_ACC), "train_clean": (CLEAN_LOSS, CLEAN_ACC),
                     "val": (VAL_LOSS, VAL_ACC), "test": (TEST_LOSS, TEST_ACC), "unused": (UNUSED_LOSS, UNUSED_ACC),
                     "trained": (TRAINED_LOSS, TRAINED_ACC)}

    def _log_epoch(self, stage: str) -> None:
        # Logging the metric objects: Lightning computes them (synced across devices), then resets.
        loss, acc = self.STAGE_METRICS[stage]
        self.log(loss, getattr(self, f"{stage}_loss"), prog_bar=stage == "val", add_dataloader_idx=False)
        self.log(acc, getattr(self, f"{stage}_acc"), prog_bar=stage in ("train", "val"), add_dataloader_idx=False)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        # The data module's clean-train loader is the fixed training subset; any other is validation.
        # The logits go to callbacks (confusion matrix, misclassified images) without a second pass.
        return self._step(batch, "train_clean" if dataloader_idx == CLEAN_TRAIN_LOADER else "val")[1].detach()

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        # data.test_unused's loaders: the training samples train_size leaves out, then those trained on
        stage = {UNUSED_LOADER: "unused", TRAINED_LOADER: "trained"}.get(dataloader_idx, "test")
        logits = self._step(batch, stage)[1].detach()
        if stage != "trained":
            self.unseen_acc.update(logits, batch[1])
        return logits

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        if self.unused_acc.update_called:  # unseen/acc: the test split and the unused samples together
            self._log_epoch("unused")
            self.log(UNSEEN_ACC, self.unseen_acc, add_dataloader_idx=False)
        else:
            self.unseen_acc.reset()
        if self.trained_acc.update_called:
            self._log_epoch("trained")

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
            self.log_dict({GAP: clean_acc - val_acc, BIAS: self.hparams.human_accuracy - clean_acc,
                           VARIANCE: clean_acc - val_acc}, sync_dist=True, add_dataloader_idx=False)
        self.log_dict(weight_statistics(self.net), sync_dist=True, add_dataloader_idx=False)
        self.val_acc_best.update(val_acc)
        self.log(VAL_ACC_BEST, self.val_acc_best.compute(), sync_dist=True)  # equal on all ranks

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The metrics of the moment the checkpoint was saved (its epoch's validation, clean train
        # accuracy, gap ...), so a summary of these weights can quote their own figures.
        checkpoint["metrics"] = {name: float(value) for name, value in self.trainer.callback_metrics.items()
                                 if isinstance(value, torch.Tensor) and value.numel() == 1}
        # Saved mid-epoch (interrupted.ckpt): the epoch's running train/loss and train/acc, each
        # rank's own, so the resumed epoch's figures average every batch of it, not only those
        # after the stop (TensorBoard showed the resumed epoch's train/loss off the uninterrupted run's).
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        if self.trainer.training and 0 < progress.completed < self.trainer.num_training_batches:
            checkpoint["epoch_train_metrics"] = gathered(
                {name: {k: v.detach().cpu() for k, v in getattr(self, name).metric_state.items()}
                 for name in ("train_loss", "train_acc")})

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("epoch_train_metrics")
        self._epoch_train_metrics = own_rank(saved, "epoch's training metrics") if saved else None

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        saved, self._epoch_train_metrics = getattr(self, "_epoch_train_metrics", None), None
        for name, state in (saved or {}).items():  # the cut epoch's batches before the stop
            getattr(self, name).merge_state({k: v.to(self.device) for k, v in state.items()})

    def _check_optimization(self) -> None:
        """Build the optimizer and scheduler once on a stand-in parameter, so a bad lr or
        scheduler setting fails at construction, before any data is loaded."""
        try:
            optimizer = self.optimizer_factory([nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError) as err:
            fail("model.optimizer", callable_name(self.optimizer_factory), "settings torch accepts",
                 f"fails ({' '.join(str(err).split())})")
        for key, value in optimizer.defaults.items():  # torch lets lr=inf or eps=nan through
            values = value if isinstance(value, (tuple, list)) else [value]
            if any(isinstance(v, float) and not is_finite_number(v) for v in values):
                fail(f"model.optimizer.{key}", value, "finite numbers")
        if self.scheduler_factory is not None:
            self.needs_run_length = check_scheduler(self.scheduler_factory, optimizer,
                                                              self.hparams.warmup_steps)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        epochs = steps = 1.0
        if self.scheduler_factory is not None:
            if not math.isfinite(self.trainer.num_training_batches):
                self.trainer.fit_loop.setup_data()  # as Trainer.estimated_stepping_batches does
            epochs, steps = run_length(self.trainer, self.trainer.num_training_batches)
        return [optimizer], lightning_schedulers(
            self.scheduler_factory, optimizer, epochs, steps, self.hparams.warmup_steps,
            self.hparams.warmup_start_factor, monitor=VAL_LOSS)

    def check_schedule(self, epochs: float, steps: float) -> None:
        """The schedule stepped through the whole run before training (project.model.schedules.check_schedule)."""
        if self.scheduler_factory is not None:
            check_schedule(self.scheduler_factory, self.optimizer_factory, epochs, steps)


def weight_statistics(net: nn.Module) -> dict[str, torch.Tensor]:
    """The size of the conv and linear weights: L2 (ridge) shrinks the norm, L1 (lasso) makes exact zeros."""
    with torch.no_grad():
        weights = torch.cat([w.detach().flatten() for w in layer_weights(net)])
        return {WEIGHT_NORM: torch.linalg.vector_norm(weights), ZERO_FRACTION: (weights == 0).float().mean(),
                NEAR_ZERO_FRACTION: (weights.abs() < NEAR_ZERO).float().mean()}
