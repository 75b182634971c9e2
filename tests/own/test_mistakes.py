"""The held-out table of a user's own mistakes, as a new user makes them: networks of one's own
(here), data modules (tests/run/test_own_data.py), image folders (tests/data/test_folders.py),
stream folders (here) and names of 10,000 characters (tests/run/test_paths.py). Every row runs the real CLI in-process and
must end with one line on stderr naming the setting and its value and saying what is allowed,
exit code 2, nothing on stdout and no log folder; the rows next to them that must train, do.

The classes live in tests/own/nets.py and tests/own/data.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from project.run.cli import main
from tests.test_bad_inputs import QUICK, assert_one_line
from tests.test_bad_inputs import run_cli as run

NETS = "tests.own.nets"
LONG = "x" * 10_000

pytestmark = pytest.mark.usefixtures("in_tmp_path")


# --- networks of one's own: (flags, the setting=value the line starts with, what it says) ----------

NET_MISTAKES = [
    ("Flat13", "model.net=tests.own.nets.Flat13", "returned (2, 13) for a batch of 2"),
    ("Dict", "model.net=tests.own.nets.Dict", "returned dict"),
    ("ReturnsNone", "model.net=tests.own.nets.ReturnsNone", "returned NoneType"),
    ("OneD", "model.net=tests.own.nets.OneD", "returned (2,)"),
    ("ThreeD", "model.net=tests.own.nets.ThreeD", "returned (2, 10, 1)"),
    ("BatchMean", "model.net=tests.own.nets.BatchMean", "returned (1, 10) for a batch of 2"),
    ("IntOut", "model.net=tests.own.nets.IntOut", "returned torch.int64 values"),
    ("Softmaxed", "model.net=tests.own.nets.Softmaxed", "returned probabilities (each row sums to 1)"),
    ("NanInit", "model.net=tests.own.nets.NanInit", "gives a loss of nan on its first batch"),
    ("TwoArgs", "model.net=tests.own.nets.TwoArgs", "raised TypeError on one: TwoArgs.forward() missing 1"),
    ("RGBOnly", "model.net=tests.own.nets.RGBOnly", "expected input[2, 1, 8, 8] to have 3 channels"),
    ("TrainOnlyFails", "model.net=tests.own.nets.TrainOnlyFails", "raised RuntimeError in training mode: only in"),
    ("NoParams", "model.net=tests.own.nets.NoParams", "has no parameters: nothing to train"),
    ("Frozen", "model.net=tests.own.nets.Frozen", "has every parameter frozen: nothing to train"),
    ("Detached", "model.net=tests.own.nets.Detached", "returned an output with no gradient in training mode"),
    ("InitRaises", "model.net=tests.own.nets.InitRaises", "raised ValueError while being built: width must be even"),
    ("NeedsDepth", "model.net.depth=null", "is missing: it is required by tests.own.nets.NeedsDepth"),
    ("make_net", "model.net=tests.own.nets.make_net", "is a function: name the class it builds"),
    ("NOT_A_CLASS", "model.net=tests.own.nets.NOT_A_CLASS", "is an int, not an nn.Module class"),
    ("NotAModule", "model.net=tests.own.nets.NotAModule", "is a class, not an nn.Module class"),
    ("Goood", "model.net=tests.own.nets.Goood", "tests.own.nets has no Goood; did you mean Good?"),
    ("Good --model.net.widht=3", "model.net.widht=3", "is not a setting of tests.own.nets.Good (did you mean width?)"),
    ("Good --model.net.width=abc", "model.net.width=abc", "allowed: an integer"),
    ("Good --model.net.norm=batch", "model.net.norm=batch", "is not a setting of tests.own.nets.Good"),
]


@pytest.mark.parametrize("net,named,says", NET_MISTAKES, ids=[row[0] for row in NET_MISTAKES])
def test_a_network_of_ones_own_with_a_mistake(capsys, net, named, says):
    name, *more = net.split()
    assert_one_line(*run(["fit", *QUICK, f"--model.net={NETS}.{name}", *more], capsys), named, says=says)
    assert not Path("logs").exists()


def test_a_class_path_that_does_not_import(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_syntax.py").write_text("class X(:\n    pass\n")
    (tmp_path / "broken_import.py").write_text("import not_installed_pkg\n\nclass X:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for path, says in (("broken_syntax.X", "importing broken_syntax failed: SyntaxError: invalid syntax"),
                       ("broken_import.X", "No module named 'not_installed_pkg'"),
                       ("yours.nets.Good", "importing yours.nets failed: ModuleNotFoundError")):
        line = assert_one_line(*run(["fit", *QUICK, f"--model.net={path}"], capsys), f"model.net={path}", says=says)
        assert "the module must be importable" in line or path.startswith("broken_import")
    assert not Path("logs").exists()


def test_nn_linear_is_not_handed_the_shape_as_in_features(capsys):
    assert_one_line(*run(["fit", *QUICK, "--model.net=torch.nn.Linear"], capsys), "model.net.in_features=null",
                    says="is missing: it is required by Linear")


@pytest.mark.parametrize("net", ["TimmStyle", "KwargsOnly", "LazyHead", "Float64"])
def test_constructors_met_where_they_are_train(net):
    """num_classes alone (timm-style), **kwargs, lazy layers with num_classes alone, float64."""
    from project.run.cli import ProjectCLI

    cli = ProjectCLI(args=["fit", *QUICK, f"--model.net={NETS}.{net}", "--test_after_fit=false", "--trainer.logger=false"])
    assert cli.trainer.global_step > 0 and cli.trainer.callback_metrics["val/acc"] > 0



# --- streams ----------------------------------------------------------------------------------------

def _prepared(capsys) -> Path:
    main(["prepare"])
    capsys.readouterr()
    return next(Path("data/stream").glob("digits-*"))


STREAM_MISTAKES = {
    "train/ is a file": (lambda folder: (__import__("shutil").rmtree(folder / "train"), (folder / "train").write_text("x")),
                         "has a train/ that is not a folder of chunks"),
    "meta.json garbled": (lambda folder: (folder / "meta.json").write_text("{not json"), "has a damaged meta.json"),
    "index.json garbled": (lambda folder: (folder / "val" / "index.json").write_text("[1, 2"),
                           "has no readable val/index.json"),
    "a chunk garbled": (lambda folder: next((folder / "test").glob("chunk-*.bin")).write_bytes(
        b"\xff" * next((folder / "test").glob("chunk-*.bin")).stat().st_size), "that does not decode"),
}


@pytest.mark.parametrize("fault", STREAM_MISTAKES)
def test_a_damaged_stream_folder_is_one_line_before_the_trainer(capsys, fault):
    folder = _prepared(capsys)
    damage, says = STREAM_MISTAKES[fault]
    damage(folder)
    assert_one_line(*run(["fit", *QUICK, "--data.stream=true"], capsys), "data.stream_dir=data/stream/digits-", says=says)
    assert not Path("logs").exists()


@pytest.mark.parametrize("stream_dir,says", [
    ("/proc/streamed", "cannot be used (No such file or directory"),  # not writable, even by root
    ("/sys/kernel/streamed", "cannot be used (Operation not permitted"),
    (LONG, "has a name of 10,000 bytes"),
])
def test_a_stream_folder_that_cannot_be_written(capsys, stream_dir, says):
    assert_one_line(*run(["fit", *QUICK, "--data.stream=true", f"--data.stream_dir={stream_dir}"], capsys),
                    f"data.stream_dir={stream_dir[:60]}", says=says)
    assert not Path("logs").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes a folder whatever its mode")
def test_a_stream_folder_this_user_cannot_read(tmp_path, capsys):
    Path("locked").mkdir(mode=0)
    assert_one_line(*run(["fit", *QUICK, "--data.stream=true", "--data.stream_dir=locked/stream"], capsys),
                    "data.stream_dir=locked/stream", says="cannot be used (Permission denied")
