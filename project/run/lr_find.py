"""The learning-rate range test (Smith 2017), without code: Lightning's Tuner on the configured run.

    project lr-find                                   # the default config
    project lr-find --min_lr=1e-5 --max_lr=1 --num_training=100 --model.net=MLP
    make lr-find ARGS="--config configs/experiment/baseline.yaml"

It trains ``num_training`` steps from the configured initialization while the rate grows
exponentially from ``min_lr`` to ``max_lr``, then restores the model. The suggested rate is where
the loss falls fastest (Lightning's suggestion); the loss-vs-rate plot and the measured points are
written to ``logs/<name>-lr_find/version_N/``. Every other flag is a ``project fit`` flag.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
from pathlib import Path

import torch

from project.errors import ArgumentParser, SettingError, fail, is_finite_number, stop
from project.run.paths import check_writable


def parse(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = ArgumentParser(prog="project lr-find", description=__doc__.split("\n\n")[0],
                                     epilog="Every other flag is a `project fit` flag.")
    parser.add_argument("--min_lr", type=float, default=1e-6, help="the rate the test starts from")
    parser.add_argument("--max_lr", type=float, default=1.0, help="the rate the test ends at")
    parser.add_argument("--num_training", type=int, default=100, help="training steps of the test")
    parser.add_argument("--mode", choices=("exponential", "linear"), default="exponential",
                        help="how the rate grows from step to step")
    own, rest = parser.parse_known_args(args)
    if not (is_finite_number(own.min_lr) and own.min_lr > 0):
        fail("--min_lr", own.min_lr, "a finite number > 0")
    if not (is_finite_number(own.max_lr) and own.max_lr > own.min_lr):
        fail("--max_lr", own.max_lr, f"a finite number > min_lr ({own.min_lr:g})")
    if own.num_training < 20:  # the first 10 points are not used, and a slope needs a few more
        fail("--num_training", own.num_training, "an integer >= 20")
    return own, rest


def steepest_descent(result, skip_begin: int = 10, skip_end: int = 1) -> float | None:
    """The rate where the (smoothed) loss falls fastest per decade of rate, before it diverges.

    Lightning's ``suggestion()`` differentiates by the rate itself; on an exponential sweep that
    weighs the smallest rates' noise most, and it picked 4e-5 on the default run, where the loss
    had not yet started to fall. Marked on the plot like Lightning's own."""
    import numpy as np

    lrs, losses = np.array(result.results["lr"]), np.array(result.results["loss"])
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(losses) < skip_begin + 3:  # too few points past the first steps to find a slope
        return None
    # past its lowest point the loss only diverges
    end = min(len(losses) - skip_end, int(losses[skip_begin:].argmin()) + skip_begin + 1)
    if end - skip_begin < 3:
        return None
    gradient = np.gradient(losses[skip_begin:end], np.log(lrs[skip_begin:end]))
    if gradient.min() >= 0:
        return None
    return float(lrs[int(gradient.argmin()) + skip_begin])


def plot(lrs: list[float], losses: list[float], suggestion: float | None, path: Path, skip_begin: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.semilogx(lrs[:skip_begin + 1], losses[:skip_begin + 1], color="0.7", label="first steps (not used)")
    ax.semilogx(lrs[skip_begin:], losses[skip_begin:], color="C0", label="smoothed training loss")
    if suggestion is not None:
        ax.axvline(suggestion, color="C3", linestyle="--", label=f"suggested lr {suggestion:.3g}")
    ax.set_xlabel("learning rate (grows every step)")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate range test: {len(lrs)} steps")
    ax.legend()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def check(trainer, model, datamodule) -> None:
    """The data and the network checked on one batch, as fit checks them, before the range test."""
    from project.data.datamodule import ImageDataModule
    from project.run import own_data
    from project.run.dry_run import dry_run

    if isinstance(datamodule, ImageDataModule):
        datamodule.setup()
        dry_run(model, datamodule.prepare(datamodule.train_set.head(2)),
                torch.as_tensor(datamodule.train_set.labels[:2]).long())
    else:
        own_data.check(datamodule, model, trainer, "lr-find")


def run(trainer, model, datamodule, own: argparse.Namespace) -> Path:
    """The range test on the built model, data module and trainer; writes the plot and the points."""
    from lightning.pytorch.tuner import Tuner

    logger = trainer.logger
    if logger is None:
        stop(SettingError("trainer.logger", False, "a logger", "leaves lr-find no run folder for its plot"))
    try:
        check_writable(Path(logger.save_dir or "."))
    except SettingError as err:
        stop(err)
    logger._name = f"{logger.name}-lr_find"  # beside the fit runs, never one of them
    folder = Path(logger.log_dir)
    # The finder's own progress bar and restore notes; an error still surfaces as an exception.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = Tuner(trainer).lr_find(model, datamodule=datamodule, min_lr=own.min_lr, max_lr=own.max_lr,
                                        num_training=own.num_training, mode=own.mode, update_attr=False)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lr_find.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lr", "loss"])
        writer.writerows(zip(result.results["lr"], result.results["loss"]))
    suggestion = steepest_descent(result)
    plot(result.results["lr"], result.results["loss"], suggestion, folder / "lr_find.png")
    if suggestion is None:
        print(f"no suggestion: the loss did not fall steadily over {own.min_lr:g}..{own.max_lr:g}; "
              f"plot: {folder / 'lr_find.png'}")
    else:
        print(f"suggested learning rate {suggestion:.3g} (where the loss falls fastest); plot: "
              f"{folder / 'lr_find.png'}\ntrain with it: project fit --model.optimizer.init_args.lr={suggestion:.3g}")
    return folder

