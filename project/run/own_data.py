"""A data module of the user's own, checked before any work: what the model needs from it, and
one batch of each loader the command uses, before the Trainer makes a log folder.

- ``num_classes`` and ``input_shape``: the model is built from them (they are linked into the
  model when it is made), so a missing or malformed one is one line naming the attribute and what
  sets it, not a traceback after epoch 0.
- The loader methods the command calls: fit trains on ``train_dataloader()``, validates every
  epoch on ``val_dataloader()`` (early stopping and the best checkpoint watch val/loss) and tests
  on ``test_dataloader()`` after fit; validate, test and predict each need their own.
- ``prepare_data()`` and ``setup(stage)`` run once here, with the Trainer attached as Lightning
  attaches it; the first batch of each loader is read and checked: a pair (images, labels),
  floating-point images of [batch, *input_shape], finite, and integer labels of [batch] in
  [0, num_classes). Then two of its images go through the network (project/run/dry_run.py).

Lightning runs setup again when training starts, as it does for each stage; the random streams
are left as they were, so a run trains the same with these checks as without them. Under several
processes the first rank checks, before the others start.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities.model_helpers import is_overridden

from project.errors import SettingError, fail, first_line, is_integer
from project.run.dry_run import dry_run

CLASSES = "an integer >= 2, the number of classes (the network's output width)"
SHAPE = "(channels, height, width): three integers >= 1, the shape of one image"
WHY = {
    "train_dataloader": "fit trains on it",
    "val_dataloader": "fit validates every epoch: early stopping and the best checkpoint watch val/loss",
    "test_dataloader": "the test after fit, or --test_after_fit=false",
    "predict_dataloader": "predict reads it",
}


def name_of(data) -> str:
    kind = type(data)
    return f"{kind.__module__}.{kind.__qualname__}"


def _attribute(data, attribute: str, allowed: str):
    try:
        return getattr(data, attribute)
    except SettingError:
        raise
    except AttributeError:
        fail("data", name_of(data), f"a data module that sets self.{attribute} in its __init__: {allowed}",
             f"has no {attribute} (the model is built from it before any data is read)")


def num_classes_of(data) -> int:
    """Linked into model.num_classes when the model is made (ProjectCLI.add_arguments_to_parser)."""
    value = _attribute(data, "num_classes", CLASSES)
    if not (is_integer(value) and value >= 2):
        fail("data.num_classes", value, CLASSES, f"(set by {name_of(data)}) is {type(value).__name__}"
             if not is_integer(value) else f"(set by {name_of(data)})")
    return int(value)


def input_shape_of(data) -> tuple[int, int, int]:
    """Linked into model.input_shape when the model is made."""
    value = _attribute(data, "input_shape", SHAPE)
    ok = isinstance(value, (tuple, list, torch.Size)) and len(value) == 3 and all(is_integer(v) and v >= 1 for v in value)
    if not ok:
        fail("data.input_shape", value, SHAPE, f"(set by {name_of(data)})")
    return tuple(int(v) for v in value)


def loaders_needed(subcommand: str, test_after_fit: bool) -> list[str]:
    if subcommand == "fit":
        return ["train_dataloader", "val_dataloader", *(["test_dataloader"] if test_after_fit else [])]
    if subcommand == "lr-find":  # the range test trains only
        return ["train_dataloader"]
    return [f"{'val' if subcommand == 'validate' else subcommand}_dataloader"]


@contextmanager
def _random_state_kept():
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python)
    np.random.set_state(numpy)


def _stopped(data, allowed: str, why: str, err: Exception | None = None):
    if isinstance(err, SettingError):
        raise err
    if err is not None:
        first = first_line(err)
        why = f"{why}: {type(err).__name__}: {first[:300]}"
    fail("data", name_of(data), allowed, why)


def check(data: LightningDataModule, model, trainer, subcommand: str, test_after_fit: bool = True) -> None:
    """Every check of the module's text, before any log folder; nothing is left changed."""
    needed = loaders_needed(subcommand, test_after_fit)
    for method in needed:
        if not is_overridden(method, data, LightningDataModule):
            _stopped(data, f"a data module with {method}() ({WHY[method]})", f"has no {method}()")
    stage = {"fit": "fit", "lr-find": "fit", "validate": "validate", "test": "test", "predict": "predict"}[subcommand]
    where = f"where to fix it: {name_of(data)}"
    with _random_state_kept():
        data.trainer = trainer
        try:
            data.prepare_data()
            data.setup(stage)
        except Exception as err:
            _stopped(data, f"a data module whose prepare_data() and setup() run ({where})",
                     f"raised in setup('{stage}')", err)
        first = None
        for method in needed[:2]:  # the loaders the run starts with; test's too when it is the command's
            images, labels = _first_batch(data, method, model.hparams.num_classes, tuple(model.hparams.input_shape))
            if first is None and labels is not None:
                first = images, labels
    if first is not None:
        dry_run(model, first[0][:2].float(), first[1][:2].long())


def _first_batch(data, method: str, classes: int, shape: tuple[int, int, int]):
    where = f"fix it in {name_of(data)}.{method}"
    try:
        loader = getattr(data, method)()
    except Exception as err:
        _stopped(data, f"a data module whose {method}() returns a DataLoader ({where})", f"raised in {method}()", err)
    if loader is None:
        _stopped(data, f"a data module whose {method}() returns a DataLoader", f"returned None from {method}()")
    if isinstance(loader, dict) and loader:  # several loaders: the first is looked at
        loader = next(iter(loader.values()))
    if isinstance(loader, (list, tuple)) and loader and not isinstance(loader[0], torch.Tensor):
        loader = loader[0]
    try:
        batch = next(iter(loader))
    except StopIteration:
        _stopped(data, f"a {method}() with at least one batch", f"gives no batches from {method}() (an empty data set?)")
    except Exception as err:
        _stopped(data, f"a {method}() whose batches load ({where})", f"raised reading the first batch of {method}()", err)
    pair = isinstance(batch, (tuple, list)) and len(batch) == 2
    if method == "predict_dataloader" and isinstance(batch, torch.Tensor):
        images, labels = batch, None
    elif pair:
        images, labels = batch
    else:
        came = f"{type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list, dict)) else type(batch).__name__
        _stopped(data, f"batches (images, labels): a pair of tensors ({where})", f"gives a {came} from {method}()")
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != shape:
        came = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        fail("data.input_shape", shape, f"batches of images [batch, {', '.join(map(str, shape))}] from {method}() "
             f"({where}, or its input_shape)", f"(set by {name_of(data)}) differs from its images: {came}")
    if not images.is_floating_point():
        _stopped(data, f"floating-point images (convert and normalize them in {name_of(data)})",
                 f"gives {images.dtype} images from {method}()")
    if not bool(torch.isfinite(images).all()):
        _stopped(data, f"finite pixel values ({where})", f"gives images with NaN or infinite values from {method}()")
    if labels is None:
        return images, None
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex() \
            or labels.shape != (len(images),):
        came = (f"{labels.dtype} labels of shape {tuple(labels.shape)}" if isinstance(labels, torch.Tensor)
                else f"labels of type {type(labels).__name__}")
        _stopped(data, f"integer class labels of shape [batch] = [{len(images)}] ({where})", f"gives {came} from {method}()")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        _stopped(data, f"labels in [0, {classes - 1}] (num_classes={classes})",
                 f"gives label {low if low < 0 else high} from {method}()")
    return images, labels


def own_constructor(err: BaseException) -> tuple[str, BaseException] | None:
    """The user's data module whose __init__ raised, and its own error, from ``err`` or the errors
    it was raised from (jsonargparse wraps a constructor's error in its own); None if none did."""
    while err is not None:
        tb = err.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            own = frame.f_locals.get("self") if frame.f_code.co_name == "__init__" else None
            if isinstance(own, LightningDataModule) and not type(own).__module__.startswith(("project.", "lightning.")):
                return name_of(own), err
            tb = tb.tb_next
        err = err.__cause__
    return None


def construction_error(err: BaseException) -> SettingError | None:
    """The one line for an error while the CLI builds the classes, where it is ours to name: a
    linked attribute's check (num_classes_of, input_shape_of) or a data module's own __init__."""
    if isinstance(err.__cause__, SettingError):  # jsonargparse wraps a link's error in its own
        return err.__cause__
    own = own_constructor(err)
    if own is None:
        return None
    (name, inner), first = own, first_line(own[1])
    return SettingError("data", name, f"settings its constructor accepts (--data.help {name} lists them)",
                        f"raised {type(inner).__name__} while being built: {first[:300]}")


def check_preparable(args: list[str]) -> None:
    """``project prepare`` converts one of ImageDataModule's data sets: a data module of one's own
    is refused by name (it was "data.stream=true is not a setting of Good")."""
    from jsonargparse._typehints import import_object

    from project.data.datamodule import ImageDataModule

    given = [a.split("=", 1)[1] for a in args if a.startswith("--data=")]
    given += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--data"]
    for path in given:
        try:
            cls = import_object(path) if "." in path else None
        except Exception:
            continue  # the parser names a path that does not import
        if isinstance(cls, type) and not issubclass(cls, ImageDataModule):
            fail("data", path, "ImageDataModule (project prepare converts its data sets into streaming chunks; a data "
                 "module of your own streams as it likes)", "is not an ImageDataModule")
