"""Streaming (``data.stream: true``): data bigger than memory, on LitData.

The data set is converted once (``project prepare``, or the first run) with ``litdata.optimize``
into chunks under ``data.stream_dir/<dataset>-<key>/``, one folder per split (train, val, test and
the clean training subset), split exactly as the in-memory path splits. The key is a hash of
the source (an image folder's file names, sizes and times) and of every setting that changes the
chunks: a changed setting or file makes a new folder, an unchanged one is reused. ``meta.json``,
written last, marks a finished conversion and holds the training split's normalization statistics,
computed a batch at a time while the chunks are read back.

Runs read the chunks through ``litdata.StreamingDataset`` and ``StreamingDataLoader``: worker
processes decode in parallel, each DDP rank reads its own part of every split, and the loader's
position travels in checkpoints, so a resumed run continues mid-epoch at the next batch. The
batches are uint8, as on the in-memory path, and are augmented and normalized on the device.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import math
import random
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from litdata import StreamingDataLoader, StreamingDataset, optimize

from project.data.datasets import DATASET_SETTINGS
from project.data.folders import check_classes_left, checked_files, read_image_file, skipped_note
from project.data.splits import RunningStats, chunk_images, split_plan
from project.errors import DataError, SettingError

# LitData hands each loader worker (and each DDP rank) its own part, so the length Lightning warns
# about is right.
warnings.filterwarnings("ignore", message=".*Your `IterableDataset` has `__len__` defined.*")
# LitData hands torch read-only chunk buffers; the images are copied to the device before any write.
warnings.filterwarnings("ignore", message=".*The given buffer is not writable.*")

FORMAT = 2  # bump when the chunks' layout changes: every cache is then rebuilt
SPLITS = ("train", "val", "test", "train_clean")
# The settings that change what the chunks hold.
KEY_SETTINGS = ("dataset", "data_dir", "val_fraction", "test_fraction", "train_size", "clean_train_size", "seed",
                "fake_size", "fake_shape", "fake_classes", "image_size", "channels", "skip_bad_files")


def _source_fingerprint(info, settings) -> list:
    """What identifies the source: an image folder's listing (names, sizes, modification times)."""
    if info.files is None:
        return []
    listing = []
    for split, (paths, labels) in sorted(info.files(settings).items()):
        for path, label in zip(paths, labels):
            stat = Path(path).stat() if Path(path).exists() else Path(path).lstat()  # a broken link: named later
            listing.append((split, path, label, stat.st_size, stat.st_mtime_ns))
    return listing


def cache_folder(info, settings) -> Path:
    """``<stream_dir>/<dataset>-<key>``: the key hashes the source and the settings in KEY_SETTINGS."""
    chosen = {k: str(Path(settings[k]).resolve()) if k == "data_dir" else settings[k] for k in KEY_SETTINGS
              if k not in DATASET_SETTINGS or k in info.reads}  # a set's own settings only where it reads them
    digest = hashlib.sha256(json.dumps([FORMAT, chosen, _source_fingerprint(info, settings)], default=str)
                            .encode()).hexdigest()[:12]
    return Path(settings["stream_dir"]) / f"{settings['dataset']}-{digest}"


def _read_tensor(item, images: torch.Tensor):
    index, label = item
    return images[index].clone(), label


def _read_file(item, shape):
    path, label = item
    return read_image_file(path, shape), label


def _plan(info, settings, shape) -> tuple[dict, object, str]:
    """Each split's items (index or file, label) and the function that reads one, split as the
    in-memory path splits (the same indices for the same settings); and the note of the files left
    out (data.skip_bad_files)."""
    skipped: list = []
    if info.files is not None:  # every file decoded once first: a bad one is one line (or left out) before any chunk
        listed = info.files(settings)
        files, skipped, _ = checked_files(listed, shape[0], bool(settings.get("skip_bad_files")))
        if skipped:
            check_classes_left(settings["data_dir"], files)
        sources = {split: (np.array(paths, dtype=object), np.array(labels)) for split, (paths, labels)
                   in files.items() if paths}
        read = functools.partial(_read_file, shape=shape)
    else:
        splits = info.load(settings)
        whole = {"train": splits.train, "val": splits.val, "test": splits.test}
        offset, parts, keep = 0, [], {}
        for split, pair in whole.items():  # one tensor, every split's images at their offset
            if pair is not None:
                parts.append(pair[0])
                keep[split] = (np.arange(offset, offset + len(pair[1])), pair[1].numpy())
                offset += len(pair[1])
        sources = keep
        read = functools.partial(_read_tensor, images=torch.cat(parts) if len(parts) > 1 else parts[0])
    items, labels = sources["train"]
    train_idx, val_idx, test_idx, part, _ = split_plan(labels, settings, len(sources["val"][1]) if "val" in sources else None,
                                                    "test" in sources)
    plan = {"train": (items[train_idx], labels[train_idx]),
            "val": sources.get("val") or (items[val_idx], labels[val_idx]),
            "test": sources.get("test") or (items[test_idx], labels[test_idx])}
    if part is not None:
        plan["train_clean"] = (plan["train"][0][part], plan["train"][1][part])
    # The training split is written in a random order: LitData shuffles chunks and the items inside
    # each chunk, so a source sorted by class (an image folder) would otherwise give one-class batches.
    order = np.random.default_rng(settings["seed"]).permutation(len(train_idx))
    plan["train"] = (plan["train"][0][order], plan["train"][1][order])
    return plan, read, skipped_note(settings.get("data_dir"), skipped, sum(len(p) for p, _ in listed.values())) \
        if skipped else ""


def prepare(info, settings, shape, verbose: bool = False) -> tuple[Path, bool]:
    """The chunks of this data set and settings: reused when ``meta.json`` says they are finished,
    else (re)written. Returns their folder, and whether this process wrote them. The global random streams are left as they were, so a
    run that converts trains exactly as a run that finds the chunks."""
    folder = cache_folder(info, settings)
    if (folder / "meta.json").is_file():
        return folder, False
    planned = _plan(info, settings, shape) if info.files is not None else None  # every file checked before any folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Processes started together (torchrun's ranks) convert once: the first holds the lock, the
    # others wait for it and find the chunks.
    lock_path = folder.parent / f".{folder.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "meta.json").is_file():
            return folder, False
        numpy_state, python_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            _convert(folder, info, settings, shape, verbose, planned)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        lock_path.unlink()  # a process still waiting on it finds meta.json
    return folder, True


def _convert(folder: Path, info, settings, shape, verbose: bool, planned=None) -> None:
    if folder.exists():  # a conversion that was stopped: start it again
        shutil.rmtree(folder)
    plan, read, note = planned or _plan(info, settings, shape)
    print(f"converting data set {settings['dataset']} into streaming chunks in {folder} (once; `project prepare` "
          "does it alone)", file=sys.stderr, flush=True)
    workers = max(1, min(settings["num_workers"] or 1, len(plan["train"][1]) // 256 or 1))
    for split, (items, labels) in plan.items():
        # At least 16 chunks a split (of 64 images or more, 64 MB at most): LitData shards a split
        # over DDP ranks and loader workers by chunks, and shuffles their order.
        per_chunk = max(64, min(math.ceil(len(labels) / 16), (64 << 20) // (math.prod(shape) + 64)))
        optimize(fn=read, inputs=[(item, int(label)) for item, label in zip(items.tolist(), labels.tolist())],
                 output_dir=str(folder / split), chunk_size=per_chunk, num_workers=workers, mode="overwrite",
                 verbose=verbose, start_method="fork", keep_data_ordered=True)  # as the labels file is
        np.save(folder / f"{split}_labels.npy", labels.astype(np.int64))
    stats = RunningStats(shape[0])
    for images, _ in open_loader(folder, "train", batch_size=chunk_images(shape), shuffle=False):
        stats.add(images)
    meta = {"format": FORMAT, "shape": list(shape), "counts": {s: len(plan[s][1]) for s in plan}, "note": note,
            "sums": {"n": stats.n, "sum": stats.sum.tolist(), "sq": stats.sq.tolist(), "low": stats.low.tolist(),
                     "high": stats.high.tolist()}}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def open_splits(info, settings, shape, verbose: bool = False):
    """The chunks' folder, whether this process converted them, the train, val, test and
    clean-train splits (None where off) and the normalization statistics; the chunks are converted
    first if need be, and checked whole. A cache folder this user cannot read or write, a split
    that is not a folder of chunks, or a damaged meta.json is one line, before any log folder."""
    rebuild = "chunks written by project prepare (remove the folder and run again to rebuild it)"
    try:
        folder, converted = prepare(info, settings, shape, verbose)
        try:
            counts = json.loads((folder / "meta.json").read_text())["counts"]
        except (ValueError, KeyError, TypeError) as err:
            raise DataError("data.stream_dir", folder, rebuild, f"has a damaged meta.json ({type(err).__name__})") from None
        for split in counts:
            if not (folder / split).is_dir():
                raise DataError("data.stream_dir", folder, rebuild, f"has a {split}/ that is not a folder of chunks")
            check_chunks(folder, split)
        splits = [StreamedSplit(folder, s) if s in counts else None for s in SPLITS]
        return folder, converted, splits, stats_of(folder, settings["normalize"])
    except DataError:
        raise
    except SettingError as err:  # a setting that does not fit this data set's size
        raise DataError(err.setting, err.value, err.allowed, f"{err.why} of data set {settings['dataset']}") from None
    except OSError as err:  # read-only, unreadable, a file in the way, a full disk
        raise DataError("data.stream_dir", settings["stream_dir"], "a folder this user can read and write (made "
                        "if missing)", f"cannot be used ({err.strerror or type(err).__name__}: {err.filename})") from None


def note_of(folder: Path) -> list[str]:
    """What the conversion has to say on every run that streams these chunks (files left out)."""
    note = json.loads((folder / "meta.json").read_text()).get("note", "")
    return [note] if note else []


def stats_of(folder: Path, normalize: str) -> tuple[torch.Tensor, torch.Tensor]:
    sums = json.loads((folder / "meta.json").read_text())["sums"]
    stats = RunningStats(len(sums["sum"]))
    stats.n, stats.sum, stats.sq = sums["n"], torch.tensor(sums["sum"], dtype=torch.float64), torch.tensor(
        sums["sq"], dtype=torch.float64)
    stats.low, stats.high = torch.tensor(sums["low"]), torch.tensor(sums["high"])
    return stats.shift_scale(normalize)


def check_chunks(folder: Path, split: str) -> None:
    """Every chunk the split's index lists is there at its recorded size: a missing or truncated
    chunk stops with one line naming it, before any training."""
    where = folder / split
    try:
        index = json.loads((where / "index.json").read_text())
    except (OSError, ValueError) as err:
        raise DataError("data.stream_dir", folder, "chunks written by project prepare (remove the folder to rebuild it)",
                        f"has no readable {split}/index.json ({type(err).__name__})") from None
    for chunk in index["chunks"]:
        path = where / chunk["filename"]
        size = path.stat().st_size if path.is_file() else None
        if size != chunk["chunk_bytes"]:
            raise DataError("data.stream_dir", folder, "chunks written by project prepare (remove the folder and run "
                            "again to rebuild it)", f"has a damaged chunk {split}/{chunk['filename']}: "
                            f"{'missing' if size is None else f'{size} bytes'}, its index says {chunk['chunk_bytes']}")
    # Each chunk's first and last items decoded: a chunk garbled in its header or offsets is one line
    # here, before any log folder, not mid-run (pixels garbled inside a chunk decode as pixels).
    dataset, start = _dataset(folder, split, shuffle=False, seed=0), 0
    for chunk in index["chunks"]:
        try:
            for item in {start, start + chunk["chunk_size"] - 1}:
                dataset[item]
        except DataError as err:
            raise DataError(err.setting, err.value, err.allowed, err.why.replace(
                f"a {split} chunk", f"a chunk {split}/{chunk['filename']}")) from None
        start += chunk["chunk_size"]


class StreamedSplit:
    """One split's chunks: its length and labels without reading images, and its first images."""

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = folder, split
        self.labels = torch.from_numpy(np.load(folder / f"{split}_labels.npy"))

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> torch.Tensor:
        dataset = _dataset(self.folder, self.split, shuffle=False, seed=0)
        return torch.stack([dataset[i][0] for i in range(min(n, len(self)))])


class CheckedDataset(StreamingDataset):
    """LitData's StreamingDataset; a chunk that does not decode is one line naming the folder."""

    def __getitem__(self, index):
        try:
            return super().__getitem__(index)
        except Exception as err:
            raise self._damaged(err) from None

    def __next__(self):
        try:
            return super().__next__()
        except StopIteration:
            raise
        except Exception as err:
            raise self._damaged(err) from None

    def _damaged(self, err: Exception) -> DataError:
        folder, split = self.shown
        reason = " ".join(str(err).split()).split(" for /")[0][:120]
        return DataError("data.stream_dir", folder, "chunks written by project prepare (remove the folder and run "
                         "again to rebuild it)", f"has a {split} chunk that does not decode ({type(err).__name__}: "
                         f"{reason})")


def _dataset(folder: Path, split: str, shuffle: bool, seed: int, drop_last: bool | None = None) -> CheckedDataset:
    # item_shuffle_window=0: each chunk's items in a full random order every epoch, not by windows;
    # batch_decode=False: one image decoded per image read (LitData's "auto" decoded a block of
    # about 30 for each one used in that order: 11x slower, found with cProfile).
    dataset = CheckedDataset(str(folder / split), shuffle=shuffle, seed=seed, drop_last=drop_last, item_shuffle_window=0,
                             batch_decode=False)
    dataset.shown = (folder, split)  # as the user's settings name it, for an error
    return dataset


class ResumableLoader(StreamingDataLoader):
    """LitData's loader, whose saved position is the batches trained, not the batches fetched.

    Lightning fetches batches before it trains them (a batch in hand when a run is stopped is not
    trained), so LitData's own count would resume a batch or more too late. ``progress`` answers
    (batches trained this epoch, batches in the epoch): the data module hands it Lightning's
    count. A finished epoch saves LitData's own state, from which the next epoch starts.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = None

    def state_dict(self) -> dict:
        state = super().state_dict()
        trained, total = self.progress() if self.progress is not None else (None, None)
        if trained is None or trained >= total or state["num_samples_yielded"] == trained * self.batch_size:
            return state
        yielded = trained * self.batch_size
        return {"dataset": self.dataset.state_dict(yielded, self.num_workers, self.batch_size),
                "current_epoch": self.current_epoch, "num_samples_yielded": yielded,
                "latest_worker_idx": (trained - 1) % max(self.num_workers, 1)}


class EvalShard(torch.utils.data.Dataset):
    """One rank's share of an evaluation split (items rank, rank + world, ...), read by index:
    every item once over all ranks, none padded or dropped, so synced metrics are the whole split's."""

    def __init__(self, folder: Path, split: str, rank: int = 0, world: int = 1):
        self.dataset = _dataset(folder, split, shuffle=False, seed=0, drop_last=None)  # read by index: not used
        # the split's size from its index (under DDP the dataset's own length is one rank's part)
        count = sum(chunk["chunk_size"] for chunk in json.loads((folder / split / "index.json").read_text())["chunks"])
        self.indices = range(rank, count, world)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


def eval_loader(folder: Path, split: str, batch_size: int, rank: int = 0, world: int = 1, num_workers: int = 0,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A loader of this rank's share of an evaluation split, in order."""
    return torch.utils.data.DataLoader(EvalShard(folder, split, rank, world), batch_size=batch_size,
                                       num_workers=num_workers, persistent_workers=num_workers > 0,
                                       pin_memory=pin_memory, collate_fn=_stack)


def open_loader(folder: Path, split: str, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0,
                drop_last: bool = False, pin_memory: bool = False) -> ResumableLoader:
    """A loader of (uint8 images, labels) batches; under DDP each rank reads its own part (with
    drop_last, the same number of batches on every rank, as DDP's collectives need)."""
    # Its own generator: making an iterator draws its workers' base seed from it, not from torch's
    # global stream, so a run resumed mid-epoch drops out exactly as the uninterrupted run.
    return ResumableLoader(_dataset(folder, split, shuffle, seed, drop_last), batch_size=batch_size,
                           num_workers=num_workers, pin_memory=pin_memory, drop_last=drop_last, collate_fn=_stack,
                           generator=torch.Generator().manual_seed(seed))


def _stack(items):
    images, labels = zip(*items)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def prepare_command(datamodule) -> str:
    """``project prepare``: the conversion alone, with LitData's progress bar; what it made."""
    if "stream" not in getattr(datamodule, "hparams", {}):
        raise SettingError("data", type(datamodule).__name__, "project.data.ImageDataModule",
                           "is a data module of your own: it streams however it was written to")
    datamodule.verbose = True
    datamodule.setup()
    folder, reused = datamodule.stream_folder, not datamodule.stream_converted
    counts = json.loads((folder / "meta.json").read_text())["counts"]
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return (f"{'already prepared (reused)' if reused else 'prepared'}: {folder} holds "
            + ", ".join(f"{split} {n:,}" for split, n in counts.items()) + f" images, {size / 2**20:.1f} MiB")
