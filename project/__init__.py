"""A PyTorch Lightning template for experimenting with training techniques.

A run flows one way, and the packages read the same way; each imports only what stands before it
(tests/test_layers.py holds this against the code):

    errors.py, devices.py, memory.py,  the base every stage may use: the one-line error, what runs
    storage.py                         where, the memory a network and batch need, where a shared
                                       study lives (a database URL, heartbeats)
    data/     stage 1: data sets, the split, normalization, augmentation, streaming
    model/    stage 2: networks, the LightningModule, penalty, schedules, diagnosis
    run/      stage 3: the CLI, checks, checkpoints, monitoring, progress, the run report
    lab/      stage 4: the study (experiments x seeds), its statistics, verdicts and shared workers
    search/   stage 4: the Optuna search
    bench/    stage 4: the benchmark
"""

import warnings

from project import moved

# Lightning's own use of torch's pytree, deprecated there: not something a user can act on, and
# printed by every entry point (fit, bench, compare, search), so it is silenced once, here.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
moved.install()
