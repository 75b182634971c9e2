"""A command's start-up (project/bench/startup.py): a fresh process timed as a whole, and what
`project fit --help` imports beyond Lightning kept out of every command's start-up."""

import subprocess
import sys

from project.bench.startup import seconds

# Imported by a command only where it needs them: a split, a model zoo, the search's and the lab's
# machinery, TensorBoard's event reader, streaming. (matplotlib, scipy and torchvision.models come with
# torchmetrics, which Lightning imports to read its version: every use of torchmetrics imports them.)
HEAVY = ("sklearn", "timm", "optuna", "tensorboard.backend", "project.lab", "project.search", "project.bench",
         "litdata", "pandas")


def test_a_fresh_process_is_timed_whole():
    assert 0 < seconds([sys.executable, "-c", "pass"]) < seconds([sys.executable, "-c", "import time; time.sleep(0.3)"])


def test_the_cli_imports_nothing_heavy_before_a_command_needs_it():
    """And each subcommand builds its own parser alone (tests/run/test_cli.py runs them)."""
    code = ("import sys, project.run.cli; heavy = " + repr(HEAVY) + "; "
            "print(' '.join(sorted({m for m in sys.modules for h in heavy if m == h or m.startswith(h + '.')})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not loaded, f"imported at start-up: {loaded}"
