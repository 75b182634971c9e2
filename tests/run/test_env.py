"""Environment variables under a setting whose value is a class (project/run/env.py) are honored
as flags, and the command line wins over them."""

import pytest

from project.run.cli import main
from project.run.env import env_flags


def test_per_key_variables_under_a_class_become_flags(monkeypatch):
    monkeypatch.setenv("PL_FIT__DATA__BATCH_SIZE", "16")
    monkeypatch.setenv("PL_FIT__MODEL__NET__WIDTHS", "[8,16]")
    monkeypatch.setenv("PL_FIT__TRAINER__MAX_EPOCHS", "3")  # jsonargparse's own: left to it
    monkeypatch.setenv("PL_TEST__DATA__BATCH_SIZE", "8")  # another subcommand's
    assert env_flags("fit") == ["--data.batch_size=16", "--model.net.widths=[8,16]"]


def test_they_reach_the_run_and_the_command_line_wins(monkeypatch, capsys):
    monkeypatch.setenv("PL_FIT__DATA__BATCH_SIZE", "0")
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--trainer.logger=false"])
    assert stop.value.code == 2 and capsys.readouterr().err.strip() == "error: data.batch_size=0; allowed: an integer >= 1"
    monkeypatch.setenv("PL_FIT__DATA__BATCH_SIZE", "16")
    with pytest.raises(SystemExit):
        main(["fit", "--data.batch_size=32", "--print_config"])
    printed = capsys.readouterr().out
    assert "batch_size: 32" in printed and "batch_size: 16" not in printed


def test_as_a_user_types_it_with_no_warning_of_lightnings(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PL_FIT__DATA__BATCH_SIZE": "16"}
    done = subprocess.run([sys.executable, "-m", "project", "fit", "--print_config"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "    batch_size: 16" in done.stdout
    assert "args parameter" not in done.stderr  # the flags go into sys.argv, which DDP relaunches the ranks from
