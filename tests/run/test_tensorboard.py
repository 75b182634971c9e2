"""The run's logger (project/run/tensorboard.py): Lightning's TensorBoardLogger, its settings named
in its signature, so jsonargparse reads them without reading Lightning's and torch's source."""

import inspect

from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.run.cli import ProjectCLI
from project.run.tensorboard import TensorBoard

QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--test_after_fit=false"]


def test_every_setting_is_in_the_signature_with_lightnings_defaults():
    ours = inspect.signature(TensorBoard.__init__).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours.values())  # nothing to read from source
    theirs = inspect.signature(TensorBoardLogger.__init__).parameters
    shared = [k for k in theirs if k in ours and k not in ("self", "save_dir", "name")]
    assert shared == ["version", "log_graph", "default_hp_metric", "prefix", "sub_dir"]
    assert all(ours[k].default == theirs[k].default for k in shared)


def test_the_default_run_logs_through_it_and_its_writer_takes_the_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    built = ProjectCLI(args=["--trainer.logger.init_args.flush_secs=7", "--trainer.logger.max_queue=3"], run=False)
    writer = built.trainer.logger.experiment  # torch's SummaryWriter, as configured
    assert (writer.flush_secs, writer.max_queue) == (7, 3)
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=1", *QUICK])
    assert isinstance(cli.trainer.logger, TensorBoard)
    run = tmp_path / "logs" / "default" / "version_1"
    tags = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    assert "val/acc" in tags and "train/loss" in tags and "grad_norm/total" in tags


def test_lightnings_own_logger_is_one_class_path_away(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
                           "--trainer.logger.save_dir=mine", "--trainer.logger.max_queue=3", *QUICK])
    assert type(cli.trainer.logger) is TensorBoardLogger and (tmp_path / "mine").is_dir()
