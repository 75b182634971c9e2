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
