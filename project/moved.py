"""Module paths before the stages became packages (one round of grace): ``project.nn.ConvNet`` in an
old config, ``python -m project.compare`` in an old script. Each old path is the new module itself
(the same classes, so checks by type still hold), announced once with a FutureWarning naming the new
path. Remove after the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "project.nn": "project.model.nn", "project.schedules": "project.model.schedules",
    "project.callbacks": "project.model.callbacks", "project.diagnosis": "project.model.diagnosis",
    "project.datasets": "project.data.datasets", "project.splits": "project.data.splits",
    "project.augment": "project.data.augment", "project.stream": "project.data.stream",
    "project.cli": "project.run.cli", "project.checks": "project.run.checks",
    "project.checkpoints": "project.run.checkpoints", "project.monitor": "project.run.monitor",
    "project.hparams": "project.run.hparams", "project.progress": "project.run.progress",
    "project.report": "project.run.report", "project.lr_find": "project.run.lr_find",
    "project.gpu_check": "project.run.gpu_check",
    "project.compare": "project.lab.compare", "project.compare_run": "project.lab.runs",
    "project.compare_stats": "project.lab.stats", "project.compare_report": "project.lab.report",
    "project.compare_curve": "project.lab.curve",
    "project.search_storage": "project.storage", "project.search.storage": "project.storage",
    "project.search_report": "project.search.report",
    "project.bench_data": "project.bench.data",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the new module; ``python -m`` of an old path runs the new
    module's code (runpy asks the loader for it)."""

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        new = importlib.util.find_spec(MOVED[name])
        return importlib.util.spec_from_loader(name, self, origin=new.origin)

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is now {MOVED[spec.name]}; the old path works for one more release",
                      FutureWarning, stacklevel=2)
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import system sets the alias's spec on it next
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state

    def get_code(self, name):
        warnings.warn(f"python -m {name} is now python -m {MOVED[name]}", FutureWarning, stacklevel=2)
        new = importlib.util.find_spec(MOVED[name])
        return new.loader.get_code(MOVED[name])


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
