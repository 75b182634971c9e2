"""Old module paths (before the stages became packages) keep working for one round, with a note."""

import importlib
import subprocess
import sys
import warnings

import pytest

from project.moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_with_a_note(old):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old]  # the module's own spec, not the alias's
    assert any(f"{old} is now {MOVED[old]}" in str(w.message) and w.category is FutureWarning for w in caught)


def test_an_old_class_path_and_python_dash_m_still_run(tmp_path):
    from project.model.nn import ConvNet

    assert importlib.import_module("project.nn").ConvNet is ConvNet  # an old config's class_path
    done = subprocess.run([sys.executable, "-m", "project.compare", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--experiments" in done.stdout
    assert "python -m project.compare is now python -m project.lab.compare" in done.stderr
