"""A command's start-up: ``project fit --help`` as a fresh process against a process that only
imports Lightning (and torch under it), which every command needs. The difference is our share:
what the project's own imports add before a command does anything."""

from __future__ import annotations

import subprocess
import sys
import time

REFERENCE = [sys.executable, "-c", "import lightning.pytorch"]
OURS = [sys.executable, "-m", "project", "fit", "--help"]


def seconds(command: list[str]) -> float:
    """Wall seconds of a fresh process running ``command`` (its output discarded)."""
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def startup(repeats: int) -> tuple[float, float]:
    """(ours, reference): the best of ``repeats`` turns each, after one of each to warm the file cache."""
    seconds(REFERENCE), seconds(OURS)
    ours, reference = [], []
    for _ in range(max(1, repeats)):
        reference.append(seconds(REFERENCE))
        ours.append(seconds(OURS))
    return min(ours), min(reference)
