"""The terminal: a line per epoch, Rich's bar counting from 1, why fit stopped, and no sanity-check numbers."""

import pytest

from project.data.datamodule import ImageDataModule
from project.model.classifier import ImageClassifier
from project.run.progress import EpochRichProgressBar, PlainProgressBar, quiet_lightning


@pytest.mark.parametrize("lightning_log_level", ["INFO", "WARNING"])  # make compare quiets Lightning
def test_plain_progress_prints_one_line_per_epoch_then_why_fit_stopped(make_trainer, capsys, lightning_log_level):
    import logging

    quiet_lightning()
    logger = logging.getLogger("lightning.pytorch")
    level, logger.level = logger.level, getattr(logging, lightning_log_level)
    trainer = make_trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, enable_progress_bar=True,
                           callbacks=[PlainProgressBar()])
    trainer.fit(ImageClassifier(), ImageDataModule())
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and epochs[1].startswith("epoch 2/2")
    for name in ("train/loss", "val/loss", "val/acc", "gap/acc"):
        assert name in epochs[1]
    logger.setLevel(level)
    assert lines[-1] == "`Trainer.fit` stopped: `max_epochs=2` reached."  # after the last epoch's line
    assert lines.count(lines[-1]) == 1


def test_rich_bar_counts_epochs_from_one_and_shows_the_epoch_metrics(make_trainer):
    bar = EpochRichProgressBar()
    trainer = make_trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, enable_progress_bar=True,
                           callbacks=[bar])
    trainer.fit(ImageClassifier(), ImageDataModule())
    assert bar._get_train_description(0).strip() == "Epoch 1/2"
    assert set(bar.get_metrics(trainer, trainer.lightning_module)) >= {"train/loss", "val/loss", "val/acc", "gap/acc"}


def test_sanity_check_shows_no_validation_numbers(make_trainer):
    seen = {}

    class Spy(PlainProgressBar):
        def on_sanity_check_end(self, trainer, pl_module):
            seen.update(trainer.callback_metrics)

    trainer = make_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1,
                           callbacks=[Spy()], enable_progress_bar=True)
    trainer.fit(ImageClassifier(), ImageDataModule())
    assert not any(k.startswith(("val/", "gap/", "diagnosis/")) for k in seen)
    assert "val/acc" in trainer.callback_metrics
