"""A network's settings are its own class's (project/run/net_settings.py): no carry-over of the
default ConvNet's settings into a class of the user's own, and its help without the data's two."""

from __future__ import annotations

import pytest
import torch

from project.run.cli import main
from tests.test_bad_inputs import QUICK

NETS = "tests.own.nets"

pytestmark = pytest.mark.usefixtures("in_tmp_path")


def test_a_networks_own_defaults_are_not_the_default_convnets(capsys):
    """jsonargparse carried ConvNet's dropout (0.1) and width (1.0) into any class naming them."""
    from project.run.cli import ProjectCLI

    cli = ProjectCLI(args=[f"--model.net={NETS}.OwnDropout", *QUICK], run=False)
    assert (cli.model.net.dropout, cli.model.net.width) == (0.5, 8)
    cli = ProjectCLI(args=[f"--model.net={NETS}.OwnDropout", "--model.net.dropout=0.2", *QUICK], run=False)
    assert cli.model.net.dropout == 0.2
    cli = ProjectCLI(args=["--model.optimizer=SGD", *QUICK], run=False)  # optimizers still carry lr over
    assert cli.model.optimizer_factory(torch.nn.Linear(1, 1).parameters()).defaults["lr"] == 0.003


def test_the_help_of_a_networks_own_lists_its_own_settings(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model.net.help", f"{NETS}.OwnDropout"])
    out = capsys.readouterr().out
    assert "--model.net.dropout" in out and "--model.net.width" in out
    assert "input_shape" not in out and "num_classes" not in out
