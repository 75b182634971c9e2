"""The benchmark's data rows: memory while loading, and streaming (data.stream) against memory.

Memory is each measurement's own fresh process's peak resident size (``ru_maxrss``), so what one
measurement allocated does not hide in another's peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SHAPE = (1, 28, 28)

# Run in a fresh process: the peak resident memory before and after the data module's setup.
_LOAD = """
import json, os, resource, sys, threading, time
import sklearn.model_selection  # the split's library: a fixed cost, not a per-pixel one
from project.data.datamodule import ImageDataModule
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
peak, done = [0], [False]
def sample():  # the resident size every millisecond: the peak of the setup alone, not of the imports
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.001)
n, stream, stream_dir, epoch = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], sys.argv[4] == "1"
dm = ImageDataModule(dataset="fake", fake_size=n, fake_shape=(1, 28, 28), batch_size=256, augment=[],
                     **({"stream": True, "stream_dir": stream_dir} if stream else {}))
before, imports_peak = rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
watcher = threading.Thread(target=sample)
watcher.start()
dm.setup()
if epoch:
    for images, labels in dm.train_dataloader():
        pass
done[0] = True
watcher.join()
# The kernel's own peak, where the setup raised it above the imports' peak; else the sampled one.
kernel_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": max(peak[0], rss(), kernel_peak if kernel_peak > imports_peak else 0)}))
"""


def _measure(images: int, stream: bool, stream_dir: Path, epoch: bool) -> dict:
    run = subprocess.run([sys.executable, "-c", _LOAD, str(images), "1" if stream else "0", str(stream_dir),
                          "1" if epoch else "0"], capture_output=True, text=True, timeout=3600)
    if run.returncode != 0:
        raise RuntimeError(f"the memory measurement failed: {run.stderr.strip()[-500:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def loading_bytes_per_pixel(images: int, workdir: Path) -> float:
    """Peak bytes each pixel adds while the in-memory path loads, splits and normalizes: the slope
    between ``images`` and three times as many, so fixed costs (a library's first use, one chunk of the
    statistics) are not counted as per-pixel ones."""
    peaks = [min((lambda seen: seen["peak"] - seen["before"])(_measure(n, False, workdir / "stream", epoch=False))
                 for _ in range(3)) for n in (images, 3 * images)]  # the least of three: a stray page is no pixel's
    return (peaks[1] - peaks[0]) / (2 * images * SHAPE[0] * SHAPE[1] * SHAPE[2])


def streaming_memory(small: int, large: int, workdir: Path) -> tuple[float, float]:
    """Peak resident bytes of a process that streams one epoch of ``small`` and of ``large`` images
    (converted beforehand, as `project prepare` does)."""
    for n in (small, large):
        _measure(n, True, workdir / "stream", epoch=False)  # the conversion, in its own process
    return tuple(_measure(n, True, workdir / "stream", epoch=True)["peak"] for n in (small, large))


def streamed_data(train_images: int, batch: int, workdir: Path, stream: bool):
    """The bench's MNIST-shaped fake images, in memory or streamed from chunks."""
    from project.data.datamodule import ImageDataModule

    val, test = 0.05, 0.01
    dm = ImageDataModule(dataset="fake", fake_size=int(train_images / (1 - val - test)) + 2, fake_shape=SHAPE,
                         val_fraction=val, test_fraction=test, batch_size=batch, augment=[],
                         **({"stream": True, "stream_dir": str(workdir / "stream")} if stream else {}))
    dm.setup("fit")
    return dm


def rows(sizes, workdir: Path, add, trainer_rate) -> None:
    """Adds rows 6a-6c with the benchmark's ``add``; ``trainer_rate`` is its Trainer throughput."""
    images = sizes.epoch_images
    add("6a. in-memory loading: goal / peak bytes per pixel", 2.0, loading_bytes_per_pixel(images, workdir), 1.0,
        "B/px", f"{images:,} and {3 * images:,} 28x28 images; ratio >= 1: at most 2 bytes a pixel")
    small, large = sizes.stream_images
    peak_small, peak_large = streaming_memory(small, large, workdir)
    add(f"6b. streaming: peak memory, {small:,} / {large:,} images", peak_small / 2**20, peak_large / 2**20, 1 / 1.2,
        "MiB", "ratio >= 0.83: memory grows at most 1.2x for 10x the images")
    memory, streamed = (streamed_data(sizes.stream_train, sizes.batch, workdir, s) for s in (False, True))
    rate_memory = max(trainer_rate(memory) for _ in range(sizes.repeats))
    rate_stream = max(trainer_rate(streamed) for _ in range(sizes.repeats))
    add("6c. training throughput, streamed / in memory (img/s)", rate_stream, rate_memory, 0.8, "img/s",
        f"{sizes.stream_train} images, the same training loop")
