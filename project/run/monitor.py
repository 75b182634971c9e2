"""What TensorBoard shows beyond scalars: histograms, gradient norms, pictures and the step-wise rate.

The hparams and custom scalars tabs are project/run/hparams.py's; the terminal is project/run/progress.py's.

Every callback here writes through the run's TensorBoardLogger and does nothing without one, on
rank 0 only. Costly pictures are drawn every ``every_n_epochs`` epochs, never per step.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from project.data.augment import BatchAugment
from project.data.datamodule import CLEAN_TRAIN_LOADER
from project.errors import fail

MONITORED_LAYERS = (nn.Conv2d, nn.Linear)


def tensorboard_writer(trainer: Trainer):
    """The SummaryWriter of the run's TensorBoardLogger, or None (no logger, or not rank 0)."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _layers(pl_module: LightningModule) -> dict[str, nn.Module]:
    """Each conv/linear layer by the one name its weights, gradients, gradient norm and activations
    share, in one scheme for any network: ``logits`` for the last one (the output layer); in a network
    with ``blocks`` (ConvNet, MLP, or yours), ``block<i>`` for block i's layer (``block<i>_<j>``
    where the block holds several) and ``head<j>`` for the head's hidden layers; any other layer by
    its path in the network, dots as underscores (``stem``, ``layer1_0_conv1``)."""
    layers = [(name, m) for name, m in pl_module.net.named_modules() if isinstance(m, MONITORED_LAYERS)]
    per_block = Counter(name.split(".")[1] for name, _ in layers if name.startswith("blocks."))
    head = [m for name, m in layers[:-1] if name.split(".")[0] == "head"]
    seen: Counter = Counter()
    names: dict[str, nn.Module] = {}
    for number, (name, layer) in enumerate(layers):
        parts = name.split(".")
        if number == len(layers) - 1:
            key = "logits"
        elif parts[0] == "blocks" and len(parts) > 1:
            block = parts[1]
            key = f"block{block}" if per_block[block] == 1 else f"block{block}_{seen[block]}"
            seen[block] += 1
        elif parts[0] == "head":
            key = f"head{head.index(layer)}"
        else:
            key = name.replace(".", "_")
        names[key] = layer
    return names


def _on_interval(trainer: Trainer, every_n_epochs: int) -> bool:
    return every_n_epochs > 0 and trainer.current_epoch % every_n_epochs == 0


def add_histogram(writer, tag: str, values: torch.Tensor, step: int, bins: int = 64) -> None:
    """A histogram computed by torch (``torch.histc``) and written raw: tensorboard's own
    ``add_histogram`` goes through float64 numpy copies, which cost more than the epoch on small nets."""
    values = values.detach().flatten().float()
    low, high = values.min(), values.max()
    if high <= low:
        high = low + 1e-6
    counts = torch.histc(values, bins=bins, min=float(low), max=float(high))
    limits = torch.linspace(float(low), float(high), bins + 1)[1:]
    writer.add_histogram_raw(tag, min=float(low), max=float(high), num=values.numel(), sum=float(values.sum()),
                             sum_squares=float(values.pow(2).sum()), bucket_limits=limits.tolist(),
                             bucket_counts=counts.cpu().tolist(), global_step=step)


class Histograms(Callback):
    """Weights and gradients of every conv/linear layer, and activations after every block.

    The activations are those of a fixed batch, the first ``num_samples`` validation images, seen
    in eval mode: the same images every epoch and every run with the same data settings, so the
    pictures of different initializations compare (Glorot & Bengio 2010, fig. 6).
    """

    def __init__(self, every_n_epochs: int = 5, weights: bool = True, gradients: bool = True,
                 activations: bool = True, num_samples: int = 256):
        """
        Args:
            every_n_epochs: draw the histograms every this many epochs (0 turns them all off).
            weights: histograms of each conv/linear weight, tagged weights/<layer>.
            gradients: histograms of each conv/linear weight's gradient, tagged gradients/<layer>,
                at the first optimizer step of the epoch.
            activations: histograms of each block's output on the fixed batch, tagged activations/<block>.
            num_samples: size of the fixed validation batch.
        """
        if every_n_epochs < 0:
            fail("Histograms.every_n_epochs", every_n_epochs, "an integer >= 0 (0: off)")
        if num_samples < 1:
            fail("Histograms.num_samples", num_samples, "an integer >= 1")
        self.every_n_epochs, self.num_samples = every_n_epochs, num_samples
        self.weights, self.gradients, self.activations = weights, gradients, activations
        self._grads_due = False
        self._drawn_step = -1

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._grads_due = self.gradients and _on_interval(trainer, self.every_n_epochs)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        writer = tensorboard_writer(trainer)
        if not self._grads_due or writer is None:
            return
        self._grads_due = False
        for name, layer in _layers(pl_module).items():
            if layer.weight.grad is not None:
                add_histogram(writer, f"gradients/{name}", layer.weight.grad, trainer.global_step)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not _on_interval(trainer, self.every_n_epochs):
            return
        self._draw(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The weights training ended with, whatever the interval (30 epochs, every 5: epoch 30 too).
        if self.every_n_epochs > 0 and self._drawn_step != trainer.global_step:
            self._draw(trainer, pl_module)

    def _draw(self, trainer: Trainer, pl_module: LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        step = self._drawn_step = trainer.global_step
        if self.weights:
            for name, layer in _layers(pl_module).items():
                add_histogram(writer, f"weights/{name}", layer.weight, step)
        if self.activations and trainer.datamodule is not None:
            for name, values in self.block_outputs(pl_module, trainer.datamodule).items():
                add_histogram(writer, f"activations/{name}", values, step)

    def block_outputs(self, pl_module: LightningModule, datamodule) -> dict[str, torch.Tensor]:
        """Each block's output (and the logits) on the fixed validation batch."""
        if getattr(datamodule, "val_set", None) is None or not hasattr(datamodule, "prepare"):
            return {}  # a data module of the user's own: the fixed batch is ImageDataModule's
        images = datamodule.val_set.head(self.num_samples).to(pl_module.device)
        net = pl_module.net
        blocks = dict(getattr(net, "blocks", nn.ModuleList()).named_children())
        outputs: dict[str, torch.Tensor] = {}
        hooks = [block.register_forward_hook(
            lambda module, args, out, key=f"block{name}": outputs.__setitem__(key, out.detach()))
            for name, block in blocks.items()]
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                outputs["logits"] = pl_module(datamodule.prepare(images)).detach()
        finally:
            for hook in hooks:
                hook.remove()
            pl_module.train(was_training)
        return outputs


class GradientNorms(Callback):
    """The L2 norm of each layer's weight gradient and of all gradients, every logging step.

    Tagged grad_norm/<layer> and grad_norm/total: exploding or vanishing gradients show at a glance.
    Written straight to the loggers with one device sync per logging step, not through
    ``self.log``, whose bookkeeping costs more than the norms on a small net.
    """

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        if trainer.global_step % trainer.log_every_n_steps or not trainer.loggers:
            return
        params = [p for p in pl_module.parameters() if p.grad is not None]
        if not params:
            return
        norms = torch._foreach_norm([p.grad.detach() for p in params])  # one call for all (as clip_grad_norm_ does)
        index = {id(p): k for k, p in enumerate(params)}
        layers = {name: index[id(layer.weight)] for name, layer in _layers(pl_module).items() if id(layer.weight) in index}
        values = torch.stack([*norms, torch.linalg.vector_norm(torch.stack(norms))]).tolist()  # one device sync
        metrics = {f"grad_norm/{name}": values[k] for name, k in layers.items()}
        metrics["grad_norm/total"] = values[-1]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


class Pictures(Callback):
    """Augmented training samples at fit start; a confusion matrix after validation (every
    ``every_n_epochs``) and after test; the misclassified test images with their labels."""

    def __init__(self, every_n_epochs: int = 10, max_misclassified: int = 32):
        """
        Args:
            every_n_epochs: draw the validation confusion matrix every this many epochs (0: never;
                the test one is always drawn).
            max_misclassified: how many misclassified test images to show (0: none).
        """
        for name, value in (("every_n_epochs", every_n_epochs), ("max_misclassified", max_misclassified)):
            if value < 0:
                fail(f"Pictures.{name}", value, "an integer >= 0")
        self.every_n_epochs, self.max_misclassified = every_n_epochs, max_misclassified
        self.confusion: MulticlassConfusionMatrix | None = None
        self._wrong: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        writer, dm = tensorboard_writer(trainer), trainer.datamodule
        if writer is None or dm is None or not getattr(dm, "augmentation", None):
            return
        from torchvision.utils import make_grid

        # A separate generator: drawing this picture must not change the training run's draws.
        augment = BatchAugment(dm.augmentation.specs)
        augment.seed(0)
        originals = dm.train_set.head(16).float() / 255
        grid = make_grid(torch.cat([originals, augment(originals.repeat(3, 1, 1, 1))]), nrow=16, pad_value=0.5)
        zoom = max(1, 64 // originals.shape[-1])  # 8x8 digits are too small to see as they are
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=zoom, mode="nearest")[0]
        writer.add_image("data/augmented", grid, trainer.global_step)  # the top row: the originals

    def _due(self, trainer: Trainer, stage: str) -> bool:
        return tensorboard_writer(trainer) is not None and (
            stage == "test" or (not trainer.sanity_checking and _on_interval(trainer, self.every_n_epochs)))

    def _start(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.confusion = None
        self._wrong = []
        if self._due(trainer, stage):
            # Validation and test are not sharded across DDP processes (project/data/datamodule.py), so rank 0
            # alone has seen the whole split: no collective, which the other ranks would not join.
            self.confusion = MulticlassConfusionMatrix(pl_module.hparams.num_classes,
                                                       sync_on_compute=False).to(pl_module.device)

    def _batch(self, outputs, batch, stage: str) -> None:
        if self.confusion is None or not isinstance(outputs, torch.Tensor):
            return
        images, labels = batch
        predictions = outputs.argmax(dim=-1)
        self.confusion.update(predictions, labels)
        have = sum(len(w[0]) for w in self._wrong)
        if stage == "test" and have < self.max_misclassified:
            wrong = predictions != labels
            keep = slice(0, self.max_misclassified - have)
            self._wrong.append((images[wrong][keep].cpu(), predictions[wrong][keep].cpu(), labels[wrong][keep].cpu()))

    def _end(self, trainer: Trainer, stage: str) -> None:
        if self.confusion is None:
            return
        writer, names = tensorboard_writer(trainer), _class_names(trainer, self.confusion.num_classes)
        writer.add_image(f"{stage}/confusion_matrix", confusion_image(self.confusion.compute().cpu(), names),
                         trainer.global_step)
        if stage == "test" and self._wrong and sum(len(w[0]) for w in self._wrong):
            images, predicted, true = (torch.cat(parts) for parts in zip(*self._wrong))
            writer.add_image("test/misclassified", misclassified_image(images, predicted, true, names),
                             trainer.global_step)
        self.confusion, self._wrong = None, []

    def on_validation_epoch_start(self, trainer, pl_module):
        self._start(trainer, pl_module, "val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if dataloader_idx != CLEAN_TRAIN_LOADER:
            self._batch(outputs, batch, "val")

    def on_validation_epoch_end(self, trainer, pl_module):
        self._end(trainer, "val")

    def on_test_epoch_start(self, trainer, pl_module):
        self._start(trainer, pl_module, "test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch(outputs, batch, "test")

    def on_test_epoch_end(self, trainer, pl_module):
        self._end(trainer, "test")


def _class_names(trainer: Trainer, num_classes: int) -> list[str]:
    return list(getattr(trainer.datamodule, "class_names", None) or (str(i) for i in range(num_classes)))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def confusion_image(matrix: torch.Tensor, names: list[str], cell: int = 30) -> torch.Tensor:
    """The confusion matrix (rows: true class, columns: predicted) as a CHW uint8 image.

    Drawn with PIL, not matplotlib: a figure costs more than a whole epoch on the digits.
    """
    from PIL import Image, ImageDraw

    n = len(names)
    font = _font(11)
    label_width = 8 + 7 * max(len(name) for name in names)
    size = label_width + n * cell + 4
    image = Image.new("RGB", (size, size + 16), "white")
    draw = ImageDraw.Draw(image)
    share = matrix.float() / matrix.sum(dim=1, keepdim=True).clamp_min(1)  # per true class
    for i in range(n):
        draw.text((4, label_width + i * cell + cell // 3), names[i][:12], fill="black", font=font)
        draw.text((label_width + i * cell + 3, label_width - 14), names[i][:4], fill="black", font=font)
        for j in range(n):
            shade = int(255 * (1 - 0.85 * float(share[i, j])))
            x, y = label_width + j * cell, label_width + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255), outline=(220, 220, 220))
            if matrix[i, j]:
                draw.text((x + 4, y + cell // 3), str(int(matrix[i, j])),
                          fill="white" if shade < 128 else "black", font=font)
    draw.text((label_width, size), "columns: predicted, rows: true", fill="gray", font=font)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def misclassified_image(images: torch.Tensor, predicted: torch.Tensor, true: torch.Tensor, names: list[str],
                        columns: int = 8) -> torch.Tensor:
    """A grid of images, each captioned with its predicted and true class, as a CHW uint8 image."""
    from PIL import Image, ImageDraw

    tile = 64
    font = _font(10)
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * (tile + 6), rows * (tile + 30)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (image, p, t) in enumerate(zip(images.float(), predicted, true)):
        low, high = image.amin(), image.amax()
        pixels = ((image - low) / (high - low + 1e-8) * 255).to(torch.uint8)
        pixels = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels[:3]
        tile_image = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize((tile, tile), Image.NEAREST)
        x, y = (k % columns) * (tile + 6), (k // columns) * (tile + 30)
        canvas.paste(tile_image, (x, y))
        draw.text((x, y + tile + 2), f"pred {names[p]}"[:12], fill="red", font=font)
        draw.text((x, y + tile + 14), f"true {names[t]}"[:12], fill="black", font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


class StepLearningRate(LearningRateMonitor):
    """Lightning's LearningRateMonitor at step resolution, written only where the rate changes: a
    warm-up or a one-cycle schedule changes it every step and is drawn step by step; an epoch-wise
    schedule is drawn as its steps (the value before each change is written at the step before it);
    a constant rate is two points, at the first and the last step. Each point costs Lightning's
    bookkeeping and a TensorBoard event, about a millisecond on a small net: writing the ~20 equal
    values of an epoch cost ~2% of a digits epoch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._settings: tuple | None = None  # the optimizers' rates (and momenta, decays) last written
        self._written: tuple[int, dict] | None = None  # the last step written and its stats
        self._seen = -1  # the last step whose rates were read

    def on_train_start(self, trainer: Trainer, *args, **kwargs) -> None:
        self._settings, self._written, self._seen = None, None, -1
        if trainer.loggers:  # without a logger there is nothing to write to: step aside
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Trainer, *args, **kwargs) -> None:
        if not trainer.loggers:
            return
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        settings = tuple(tuple(sorted((k, str(v)) for k, v in group.items() if k in ("lr", "momentum", "betas",
                                                                                    "weight_decay")))
                         for optimizer in trainer.optimizers for group in optimizer.param_groups)
        if settings != self._settings:
            if self._written is not None and self._written[0] < self._seen:  # the flat stretch ends here
                self._write(trainer, self._written[1], self._seen)
            self._settings = settings
            self._write(trainer, self._extract_stats(trainer, "step" if self.logging_interval is None else "any"), step)
        self._seen = step

    def on_train_end(self, trainer: Trainer, *args, **kwargs) -> None:
        if self._written is not None and self._written[0] < self._seen:  # a rate unchanged to the end: its last point
            self._write(trainer, self._written[1], self._seen)

    def _write(self, trainer: Trainer, stats: dict, step: int) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=step)
        self._written = (step, stats)
