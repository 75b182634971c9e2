"""Paths and names checked before any work (project/run/paths.py): names of 10,000 characters in
every path setting are one line with the value shortened, not a bare ENAMETOOLONG or a traceback
after the log folder; a study's name is one folder; an output folder must be writable."""

import os
from pathlib import Path

import pytest

from project.errors import SettingError
from project.run.paths import check_folder_name, check_output
from tests.test_bad_inputs import QUICK, assert_one_line
from tests.test_bad_inputs import run_cli as run

LONG = "x" * 10_000

pytestmark = pytest.mark.usefixtures("in_tmp_path")


@pytest.mark.parametrize("args,named", [
    (["fit", f"--trainer.logger.init_args.name={LONG}"], "trainer.logger.name=xxx"),
    (["fit", f"--trainer.logger.init_args.version={LONG}"], "trainer.logger.version=xxx"),
    (["fit", f"--trainer.logger.init_args.save_dir={LONG}"], "trainer.logger.save_dir=xxx"),
    (["fit", f"--trainer.default_root_dir=a/{LONG}"], "trainer.default_root_dir=a/xxx"),
    (["fit", "--data.dataset=image_folder", f"--data.data_dir={LONG}"], "data.data_dir=xxx"),
    (["test", f"--ckpt_path={LONG}.ckpt"], "ckpt_path=xxx"),
    (["fit", f"--config={LONG}.yaml"], "--config=xxx"),
])
def test_a_name_too_long_for_the_file_system_is_one_line(capsys, args, named):
    line = assert_one_line(*run([*args, *QUICK], capsys), named, says="has a name of 10,0")
    assert len(line) < 400  # the value is shortened in the line, with its length
    assert not Path("logs").exists()


@pytest.mark.parametrize("name", ["", "../../escape", "a/b", "..", "x" * 10_000])
def test_a_study_name_is_one_folder(name):
    with pytest.raises(SettingError, match=r"^--name=.*; allowed: a folder name of 1 to 100 characters"):
        check_folder_name("--name", name)


def test_an_output_folder_must_be_writable(tmp_path):
    check_output("--output", tmp_path / "new" / "deeper")  # made later, when the study starts
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingError, match="which is a file"):
        check_output("--output", tmp_path / "file" / "x")
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(SettingError, match="read-only"):
            check_output("--output", tmp_path / "ro" / "x")


def test_the_logger_settings_a_run_folder_is_found_by():
    from jsonargparse import Namespace

    from project.run.paths import logger_settings

    tensorboard = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                            init_args=Namespace(save_dir="runs", name="mine"))
    save_dir, name, init = logger_settings(Namespace(trainer=Namespace(logger=tensorboard)))
    assert (save_dir, name, init) == ("runs", "mine", tensorboard.init_args)
    assert logger_settings(Namespace(trainer=Namespace(logger=False))) == ("logs", "default", None)
