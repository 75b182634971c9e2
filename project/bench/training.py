"""The benchmark: our training loop against the references a user would otherwise write.

    python -m project.bench            # the full benchmark (several minutes on 2 cores)
    python -m project.bench --quick    # smaller sizes, a few minutes

Every figure is a ratio of two measurements taken in this process, repeated in turns (best of
each kept), so a shared, noisy machine moves both alike. Throughput is measured after warm-up steps, so one-time
costs (Trainer set-up, torch.compile) are reported apart, not mixed into images/second.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from project.bench import data as bench_data
from project.bench.digits import clean_eval_cost, digits_time_to_accuracy, monitoring_callbacks, monitoring_cost
from project.bench.startup import startup
from project.data.datamodule import ImageDataModule
from project.model.classifier import ImageClassifier
from project.model.nn import ConvNet


@dataclass
class Sizes:
    batch: int = 64
    warmup: int = 10
    steps: int = 150          # timed steps for throughput comparisons
    pipeline_images: int = 20_000
    epoch_images: int = 60_000
    digits_epochs: int = 30
    compile: bool = True
    repeats: int = 3          # interleaved repetitions of the throughput measurements
    stream_images: tuple[int, int] = (10_000, 100_000)  # streaming memory: the small and the large set
    stream_train: int = 20_000  # streaming vs in-memory throughput


FULL = Sizes()
QUICK = Sizes(steps=60, pipeline_images=8_000, epoch_images=8_000, digits_epochs=30, compile=False, repeats=2,
              stream_images=(5_000, 50_000), stream_train=8_000)
TINY = Sizes(batch=16, warmup=2, steps=4, pipeline_images=256, epoch_images=512, digits_epochs=1, compile=False,
             repeats=1, stream_images=(300, 3_000), stream_train=512)

SHAPE = (1, 28, 28)
STARTUP_SHARE = 0.5  # seconds a command's start-up may add to importing Lightning (row 8)


def fake_data(train_images: int, batch: int, augment: list | None = None) -> ImageDataModule:
    """MNIST-shaped random images whose training split holds ``train_images`` samples."""
    val, test = 0.05, 0.01
    dm = ImageDataModule(dataset="fake", fake_size=int(train_images / (1 - val - test)) + 2, fake_shape=SHAPE,
                         val_fraction=val, test_fraction=test, batch_size=batch, augment=augment)
    dm.setup("fit")
    return dm


class _Clock(Callback):
    """Times the training steps after the warm-up ones."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.images, self.seconds = warmup, None, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.started is None:
            self.started = time.perf_counter()
        if self.started is not None:
            self.images += len(batch[1])

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.started if self.started else float("nan")

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def hand_loop(dm: ImageDataModule, sizes: Sizes, make_net=lambda: ConvNet(SHAPE, 10)) -> float:
    """Images/second of the loop a user would write: same net, optimizer and batches, data in memory.

    It uses the model's default memory format (channels_last), so the ratio is the framework's
    overhead alone; what channels_last itself gains is option 5b.
    """
    torch.manual_seed(0)
    memory_format = torch.channels_last if ImageClassifier().hparams.channels_last else torch.contiguous_format
    net = make_net().to(memory_format=memory_format)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    images = (dm.train_set.images.float() / 255 - dm.mean) / dm.std
    labels = dm.train_set.labels
    order = torch.randperm(len(labels))
    net.train()
    started = 0.0
    for step in range(sizes.warmup + sizes.steps):
        if step == sizes.warmup:
            started = time.perf_counter()
        index = order[(step * sizes.batch) % (len(labels) - sizes.batch):][: sizes.batch]
        loss = F.cross_entropy(net(images[index].contiguous(memory_format=memory_format)), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return sizes.steps * sizes.batch / (time.perf_counter() - started)


def trainer_rate(dm: ImageDataModule, sizes: Sizes, workdir: Path, callbacks=(), precision="32-true",
                 **model_kwargs) -> float:
    """Images/second of ImageClassifier through a real Trainer (logging on, progress bar off)."""
    torch.manual_seed(0)
    clock = _Clock(sizes.warmup)
    trainer = Trainer(accelerator="auto", devices=1, max_steps=sizes.warmup + sizes.steps, limit_val_batches=0,
                      num_sanity_val_steps=0, precision=precision, logger=TensorBoardLogger(workdir, name="bench"),
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      log_every_n_steps=10, callbacks=[clock, *callbacks])
    trainer.fit(ImageClassifier(input_shape=SHAPE, **model_kwargs), dm)
    return clock.rate


def pil_pipeline_rate(dm: ImageDataModule, sizes: Sizes) -> float:
    """Images/second of the classic per-sample PIL pipeline through a DataLoader with 2 workers."""
    from PIL import Image
    from torchvision import transforms as T

    images = dm.train_set.images[: sizes.pipeline_images, 0].numpy()
    labels = dm.train_set.labels[: sizes.pipeline_images]
    transform = T.Compose([T.Resize(28), T.CenterCrop(28), T.RandomHorizontalFlip(), T.RandomRotation(10),
                           T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])

    class PILDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i], mode="L")), labels[i]

    loader = torch.utils.data.DataLoader(PILDataset(), batch_size=sizes.batch, shuffle=True, num_workers=2)
    started, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += len(x)
    return seen / (time.perf_counter() - started)


def batched_pipeline_rate(dm: ImageDataModule, sizes: Sizes) -> float:
    """Images/second of our loader plus on-device augmentation and normalization (the default augment)."""
    loader = dm.train_dataloader()
    dm.augmentation.seed(0)
    started, seen = time.perf_counter(), 0
    for images, _ in loader:
        x = dm.prepare(images, augment=True)
        seen += len(x)
        if seen >= sizes.pipeline_images:
            break
    return seen / (time.perf_counter() - started)


def end_to_end_rate(sizes: Sizes, workdir: Path) -> tuple[float, float]:
    """Images/second of a whole fit epoch (default augmentation, validation, monitoring) over the train split."""
    dm = fake_data(sizes.epoch_images, sizes.batch)
    torch.manual_seed(0)
    trainer = Trainer(accelerator="auto", devices=1, max_epochs=1, num_sanity_val_steps=0,
                      logger=TensorBoardLogger(workdir, name="end_to_end"), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10,
                      callbacks=monitoring_callbacks(), enable_autolog_hparams=False)
    started = time.perf_counter()
    trainer.fit(ImageClassifier(input_shape=SHAPE), dm)
    seconds = time.perf_counter() - started
    return len(dm.train_set) / seconds, seconds


def run(sizes: Sizes, out_dir: Path, echo=print, only_data: bool = False) -> dict:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    rows: list[dict] = []

    def add(name: str, ours: float, reference: float, goal: float | None, unit: str, note: str = "") -> None:
        """A row: ours / reference, met when that ratio is >= goal."""
        ratio = ours / reference
        row = {"measure": name, "ours": ours, "reference": reference, "ratio": ratio, "goal": goal,
               "met": None if goal is None else ratio >= goal, "unit": unit, "note": note}
        rows.append(row)
        echo(f"{name:<52} ours {ours:>10.1f}  ref {reference:>10.1f}  ratio {ratio:6.2f}"
             + (f"  goal >= {goal:g} {'met' if row['met'] else 'MISSED'}" if goal else ""))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if only_data:
            bench_data.rows(sizes, work, add, lambda data: trainer_rate(data, sizes, work))
            return _write(rows, sizes, out_dir, echo)
        dm = fake_data((sizes.warmup + sizes.steps + 2) * sizes.batch, sizes.batch, augment=[])
        # Interleaved repeats, best of each: a busy neighbour slows single measurements at random.
        hand, default = 0.0, 0.0
        for _ in range(sizes.repeats):
            hand = max(hand, hand_loop(dm, sizes))
            default = max(default, trainer_rate(dm, sizes, work))
        add("1. Trainer vs hand-written loop (img/s)", default, hand, 0.90, "img/s")

        aug_dm = fake_data(sizes.pipeline_images, sizes.batch)
        add("2. batched augmentation vs per-sample PIL (img/s)", batched_pipeline_rate(aug_dm, sizes),
            pil_pipeline_rate(aug_dm, sizes), 10.0, "img/s", f"augment={aug_dm.augmentation.specs}")

        rate, seconds = max(end_to_end_rate(sizes, work) for _ in range(max(1, sizes.repeats - 1)))
        add("3. fit epoch, augment + monitoring vs hand loop (img/s)", rate, hand, 0.90, "img/s",
            f"{sizes.epoch_images} images, {seconds:.1f} s")

        off, on = monitoring_cost(sizes, work)
        add("5a. default digits run, monitoring off / on (s per epoch)", off, on, 0.95, "s/epoch",
            f"ratio >= 0.95: monitoring costs <= 5% ({1000 * (on - off):.1f} ms per epoch)")
        per_epoch, clean = clean_eval_cost(sizes, work)
        add("5f. default digits run, without / with clean train eval (s per epoch)", per_epoch - clean, per_epoch,
            0.95, "s/epoch", f"ratio >= 0.95: train/acc_clean costs <= 5% ({1000 * clean:.1f} ms per epoch)")
        ours, lightning = startup(sizes.repeats)
        share = max(ours - lightning, 0.001)  # what the project adds to Lightning's import, whatever the machine
        add("8. start-up: goal / our share of project fit --help (s)", STARTUP_SHARE, share, 1.0, "s",
            f"ratio >= 1: our share <= {STARTUP_SHARE} s (project fit --help {ours:.2f} s, import lightning.pytorch "
            f"{lightning:.2f} s)")
        reached = digits_time_to_accuracy(sizes, work)
        target = reached["seconds_to_target"]
        rows.append({"measure": "4. digits, default config: seconds to 98% val accuracy", "ours": target,
                     "reference": None, "ratio": None, "goal": None, "met": None, "unit": "s",
                     "note": f"fit {reached['fit_seconds']:.1f} s over {reached['epochs']} epochs; best val "
                             f"{reached['best']:.4f} at {reached['best_seconds']:.1f} s"})
        echo(f"{rows[-1]['measure']:<52} {'not reached' if target is None else f'{target:.1f} s'}"
             f"  ({rows[-1]['note']})")

        options = {"5b. channels_last off / default (on)": dict(channels_last=False),
                   "5c. bf16-mixed / default": dict(precision="bf16-mixed"),
                   "5d. histograms+pictures on / off": dict(callbacks=monitoring_callbacks())}
        if sizes.compile:
            options["5e. torch.compile / default"] = dict(compile=True)
        for name, kwargs in options.items():
            rate = max(trainer_rate(dm, sizes, work, **kwargs) for _ in range(sizes.repeats))
            add(f"{name} (img/s)", rate, default, None, "img/s")

        library_rows(dm, sizes, work, add)
        bench_data.rows(sizes, work, add, lambda data: trainer_rate(data, sizes, work))
    return _write(rows, sizes, out_dir, echo)


def library_rows(dm: ImageDataModule, sizes: Sizes, work: Path, add) -> None:
    """Row 7: a network from timm through the Trainer against a hand loop over the same network (a
    fifth of the steps: a ResNet-18 step costs about ten of the small CNN's)."""
    from project.model.zoo import Timm

    fewer = replace(sizes, steps=max(2, sizes.steps // 5))
    make = partial(Timm, name="resnet18")
    hand = trainer = 0.0
    for _ in range(sizes.repeats):
        hand = max(hand, hand_loop(dm, fewer, lambda: make(SHAPE, 10)))
        trainer = max(trainer, trainer_rate(dm, fewer, work, net=make))
    add("7. timm resnet18: Trainer vs hand-written loop (img/s)", trainer, hand, 0.97, "img/s",
        f"{fewer.steps} steps of {sizes.batch}")


def _write(rows: list[dict], sizes: Sizes, out_dir: Path, echo) -> dict:
    report = {"device": _device(), "sizes": sizes.__dict__, "rows": rows, "torch": torch.__version__}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1))
    (out_dir / "bench.md").write_text(markdown(report))
    echo(f"\nwritten to {out_dir}/bench.json and bench.md")
    return report


def _device() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def markdown(report: dict) -> str:
    def fmt(value, digits=None):
        if value is None:
            return "n/a"
        return f"{value:.{digits if digits is not None else (1 if abs(value) >= 10 else 3)}f}"

    lines = [f"Device: {report['device']}, torch {report['torch']}", "",
             "| measure | ours | reference | ratio | goal | note |", "|---|---|---|---|---|---|"]
    for row in report["rows"]:
        goal = "" if row["goal"] is None else f">= {row['goal']:g} ({'met' if row['met'] else 'missed'})"
        lines.append(f"| {row['measure']} | {fmt(row['ours'])} | {fmt(row['reference'])} | "
                     f"{fmt(row['ratio'], 2)} | {goal} | {row['note']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m project.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes on 2 cores")
    parser.add_argument("--output", default="logs/bench", help="folder for bench.json and bench.md")
    parser.add_argument("--only-data", action="store_true", help="only the data rows, 6a-6c (memory, streaming)")
    args = parser.parse_args(argv)
    run(QUICK if args.quick else FULL, Path(args.output), only_data=args.only_data)


if __name__ == "__main__":
    main()
