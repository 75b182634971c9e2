"""A data module of the user's own checked before any work (project/run/own_data.py): the table
of its mistakes, one line each before any log folder, and a run left as it would be."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.test_bad_inputs import QUICK, assert_one_line
from tests.test_bad_inputs import run_cli as run

DATA = "tests.own.data"

pytestmark = pytest.mark.usefixtures("in_tmp_path")


# --- data modules of one's own --------------------------------------------------------------------

DATA_MISTAKES = [
    ("NoClasses", "data=tests.own.data.NoClasses", "has no num_classes"),
    ("NoShape", "data=tests.own.data.NoShape", "has no input_shape"),
    ("StrClasses", "data.num_classes=2", "(set by tests.own.data.StrClasses) is str"),
    ("OneClass", "data.num_classes=1", "(set by tests.own.data.OneClass)"),
    ("TwoDShape", "data.input_shape=[8, 8]", "(set by tests.own.data.TwoDShape)"),
    ("WrongShape", "data.input_shape=[1, 28, 28]", "differs from its images: (32, 1, 8, 8)"),
    ("NoBatching", "data.input_shape=[1, 8, 8]", "differs from its images: (1, 8, 8)"),
    ("NoTrainLoader", "data=tests.own.data.NoTrainLoader", "has no train_dataloader()"),
    ("NoneLoader", "data=tests.own.data.NoneLoader", "returned None from train_dataloader()"),
    ("NoVal", "data=tests.own.data.NoVal", "has no val_dataloader()"),
    ("NoTest", "data=tests.own.data.NoTest", "has no test_dataloader()"),
    ("Dicts", "data=tests.own.data.Dicts", "gives a dict of 2 from train_dataloader()"),
    ("ImagesOnly", "data=tests.own.data.ImagesOnly", "gives a Tensor from train_dataloader()"),
    ("LabelOutOfRange", "data=tests.own.data.LabelOutOfRange", "gives label 6 from train_dataloader()"),
    ("NegativeLabel", "data=tests.own.data.NegativeLabel", "gives label -1"),
    ("FloatLabels", "data=tests.own.data.FloatLabels", "gives torch.float32 labels of shape (64,)"),
    ("LabelsInBatch2D", "data=tests.own.data.LabelsInBatch2D", "labels of shape (64, 1)"),
    ("Uint8Images", "data=tests.own.data.Uint8Images", "gives torch.uint8 images"),
    ("NanImages", "data=tests.own.data.NanImages", "gives images with NaN or infinite values from val_dataloader()"),
    ("EmptyTrain", "data=tests.own.data.EmptyTrain", "gives no batches from train_dataloader()"),
    ("SetupRaises", "data=tests.own.data.SetupRaises", "raised in setup('fit'): FileNotFoundError: /data/my_images"),
    ("InitRaises", "data=tests.own.data.InitRaises", "raised ValueError while being built: size must be a power"),
    ("NotADataModule", "data=tests.own.data.NotADataModule", "is a class, not a LightningDataModule class"),
    ("Gooood", "data=tests.own.data.Gooood", "tests.own.data has no Gooood; did you mean Good?"),
    ("Good --data.sizee=3", "data.sizee=3", "is not a setting of tests.own.data.Good (did you mean size?)"),
]


@pytest.mark.parametrize("data,named,says", DATA_MISTAKES, ids=[row[0] for row in DATA_MISTAKES])
def test_a_data_module_of_ones_own_with_a_mistake(capsys, data, named, says):
    name, *more = data.split()
    assert_one_line(*run(["fit", *QUICK, f"--data={DATA}.{name}", *more], capsys), named, says=says)
    assert not Path("logs").exists()


@pytest.mark.parametrize("command,data,says", [
    ("validate", "NoVal", "has no val_dataloader()"),
    ("test", "NoTest", "has no test_dataloader()"),
    ("predict", "NoPredict", "has no predict_dataloader()"),
    ("validate", "NanImages", "gives images with NaN or infinite values from val_dataloader()"),
    ("lr-find", "Uint8Images", "gives torch.uint8 images from train_dataloader()"),
    ("prepare", "Good", "is not an ImageDataModule"),
])
def test_each_command_checks_the_loader_it_reads(capsys, command, data, says):
    assert_one_line(*run([command, *QUICK, f"--data={DATA}.{data}"], capsys), f"data={DATA}.{data}", says=says)
    assert not Path("logs").exists()


def test_the_checks_leave_the_run_as_it_would_be(capsys):
    """setup() and a batch read before the Trainer: the random streams are put back, so the trained
    weights equal those of a run that skipped the check."""
    from project.run import own_data
    from project.run.cli import ProjectCLI

    def trained(check):
        saved = own_data.check
        own_data.check = check
        try:
            cli = ProjectCLI(args=["fit", *QUICK, f"--data={DATA}.Good", "--trainer.logger=false",
                                   "--test_after_fit=false", "--trainer.enable_checkpointing=false"])
        finally:
            own_data.check = saved
        return torch.cat([p.detach().flatten() for p in cli.model.parameters()])

    assert torch.equal(trained(own_data.check), trained(lambda *args, **kwargs: None))


def test_a_data_module_with_two_validation_loaders_trains():
    from project.run.cli import ProjectCLI

    cli = ProjectCLI(args=["fit", *QUICK, f"--data={DATA}.TwoValLoaders", "--test_after_fit=false", "--trainer.logger=false"])
    assert cli.trainer.global_step > 0
