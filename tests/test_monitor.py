import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.optim.lr_scheduler import StepLR

from project.callbacks import WeightPenalty
from project.data import ImageDataModule
from project.model import ImageClassifier
from project.monitor import GradientNorms, Histograms, HParams, Pictures, PlainProgressBar, StepLearningRate


def run(tmp_path, make_trainer, callbacks, epochs=2, batches=4):
    torch.manual_seed(0)
    model = ImageClassifier(optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                            scheduler=lambda o: StepLR(o, step_size=1, gamma=0.5))
    dm = ImageDataModule(batch_size=32)
    logger = TensorBoardLogger(tmp_path, name="run", default_hp_metric=False)
    trainer = make_trainer(max_epochs=epochs, limit_train_batches=batches, limit_val_batches=2, logger=logger,
                           log_every_n_steps=2, callbacks=callbacks, enable_autolog_hparams=False)
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    return events, model, dm


def all_callbacks(**histograms):
    return [StepLearningRate(logging_interval="step"), WeightPenalty(l2=0.01), GradientNorms(),
            Histograms(every_n_epochs=1, num_samples=20, **histograms), Pictures(every_n_epochs=1), HParams()]


def test_everything_lands_in_tensorboard(tmp_path, make_trainer):
    events, model, dm = run(tmp_path, make_trainer, all_callbacks())
    tags = events.Tags()
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "gap/acc", "test/loss",
                "test/acc", "train/penalty", "lr-SGD", "grad_norm/total", "grad_norm/blocks.0.0"):
        assert tag in tags["scalars"], tag
    # the logged learning rate is the scheduler's, at every step: 0.1 for epoch 0, 0.05 for epoch 1
    lrs = [(e.step, e.value) for e in events.Scalars("lr-SGD")]
    assert lrs == [(s, pytest.approx(0.1 * 0.5 ** (s // 4))) for s in range(8)]
    # histograms: one value per weight, per activation of the fixed batch
    for name, layer in {"blocks.0.0": model.net.blocks[0][0], "head.4": model.net.head[4]}.items():
        assert events.Histograms(f"weights/{name}")[-1].histogram_value.num == layer.weight.numel()
        assert events.Histograms(f"gradients/{name}")[-1].histogram_value.num == layer.weight.numel()
    assert events.Histograms("activations/block0")[-1].histogram_value.num == 20 * 32 * 4 * 4
    assert events.Histograms("activations/logits")[-1].histogram_value.num == 20 * 10
    assert len(events.Histograms("weights/blocks.0.0")) == 2  # every epoch
    for tag in ("data/augmented (top row: originals)", "val/confusion_matrix", "test/confusion_matrix",
                "test/misclassified"):
        image = events.Images(tag)[-1]
        assert image.width > 100 and image.height > 100 and len(image.encoded_image_string) > 1000, tag
    # the hparams tab: the configuration and the metrics to show beside it
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info.hparams
    assert start["model/optimizer"].string_value == "run.<locals>.<lambda>"  # a Python callable, by name
    assert start["model/label_smoothing"].number_value == 0.0
    assert start["data/dataset"].string_value == "digits"
    assert start["penalty/l2"].number_value == pytest.approx(0.01)
    assert start["trainer/precision"].string_value == "32-true"
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"val/acc_best", "test/acc", "gap/acc"}


def test_turning_options_off_removes_their_tags(tmp_path, make_trainer):
    callbacks = [Histograms(every_n_epochs=1, weights=False, gradients=False), Pictures(every_n_epochs=0)]
    events, _, _ = run(tmp_path, make_trainer, callbacks, epochs=1)
    histograms = events.Tags()["histograms"]
    assert histograms and all(t.startswith("activations/") for t in histograms)
    assert "val/confusion_matrix" not in events.Tags()["images"]
    assert "test/confusion_matrix" in events.Tags()["images"]
    events, _, _ = run(tmp_path / "off", make_trainer, [Histograms(every_n_epochs=0)], epochs=1)
    assert events.Tags()["histograms"] == [] and events.Tags()["images"] == []
    assert not any(t.startswith("grad_norm/") for t in events.Tags()["scalars"])


def test_histograms_use_the_same_fixed_batch():
    dm = ImageDataModule()
    dm.setup("fit")
    model = ImageClassifier()
    hist = Histograms(num_samples=8)
    first = hist.block_outputs(model, dm)
    model.train()
    assert all(torch.equal(first[k], v) for k, v in hist.block_outputs(model, dm).items())
    assert model.training  # restored


def test_plain_progress_prints_one_line_per_epoch(make_trainer, capsys):
    trainer = make_trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, enable_progress_bar=True,
                           callbacks=[PlainProgressBar()])
    trainer.fit(ImageClassifier(), ImageDataModule())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2") and "val/acc" in lines[1]
