import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.optim.lr_scheduler import StepLR

from project.callbacks import WeightPenalty
from project.data import ImageDataModule
from project.model import ImageClassifier
from project.monitor import (EpochRichProgressBar, GradientNorms, Histograms, HParams, Pictures, PlainProgressBar,
                             QuietLightning, StepLearningRate)


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
                "test/acc", "train/penalty", "lr-SGD", "grad_norm/total", "grad_norm/block0", "grad_norm/head0", "grad_norm/logits"):
        assert tag in tags["scalars"], tag
    # the logged learning rate is the scheduler's, at every step: 0.1 for epoch 0, 0.05 for epoch 1
    lrs = [(e.step, e.value) for e in events.Scalars("lr-SGD")]
    assert lrs == [(s, pytest.approx(0.1 * 0.5 ** (s // 4))) for s in range(8)]
    # histograms: one value per weight, per activation of the fixed batch
    # weights, gradients, gradient norms and activations name a layer the same way
    layers = {"block0": model.net.blocks[0][0], "block2": model.net.blocks[2][0], "head0": model.net.head[0],
              "logits": model.net.head[4]}
    for name, layer in layers.items():
        assert events.Histograms(f"weights/{name}")[-1].histogram_value.num == layer.weight.numel()
        assert events.Histograms(f"gradients/{name}")[-1].histogram_value.num == layer.weight.numel()
    assert {t.split("/", 1)[1] for t in events.Tags()["histograms"]} == {"block0", "block1", "block2", "head0",
                                                                         "logits"}
    assert events.Histograms("activations/block0")[-1].histogram_value.num == 20 * 32 * 4 * 4
    assert events.Histograms("activations/logits")[-1].histogram_value.num == 20 * 10
    assert len(events.Histograms("weights/block0")) == 2  # every epoch
    for tag in ("data/augmented", "val/confusion_matrix", "test/confusion_matrix",
                "test/misclassified"):
        image = events.Images(tag)[-1]
        assert image.width > 100 and image.height > 100 and len(image.encoded_image_string) > 1000, tag
    # the hparams tab: the configuration and the metrics to show beside it
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info.hparams
    assert start["model/optimizer"].string_value == "run.<locals>.<lambda>"  # a Python callable, by name
    assert start["Run"].string_value == "run/version_0"  # the logger's name/version
    assert start["model/label_smoothing"].number_value == 0.0
    assert start["data/dataset"].string_value == "digits"
    assert start["penalty/l2"].number_value == pytest.approx(0.01)
    assert start["trainer/precision"].string_value == "32-true"
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos][:3] == ["test/acc", "val/acc_best", "gap/acc"]
    assert experiment.hparam_infos[0].name == "Run" and experiment.hparam_infos[0].differs
    # the custom scalars layout: train and validation on one chart
    from tensorboard.plugins.custom_scalar import layout_pb2

    written = events.Tensors("custom_scalars__config__")
    assert len(written) == 1  # once per run
    charts = {chart.title: list(chart.multiline.tag) for category in
              layout_pb2.Layout.FromString(written[0].tensor_proto.string_val[0]).category for chart in category.chart}
    assert charts["accuracy: clean train, running train, validation"] == ["^train/acc_clean$", "^train/acc$",
                                                                          "^val/acc$"]
    assert {"loss: clean train, running train, validation", "gap, bias, variance", "learning rate"} <= set(charts)


def _marked(events) -> tuple[list[str], list[str]]:
    experiment = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    return [info.name for info in experiment.hparam_infos if info.differs], [info.name for info in experiment.hparam_infos]


def test_hparams_list_first_what_a_run_changed_and_show_values_readably(tmp_path, make_trainer):
    from project.monitor import flatten_settings, readable

    hparams = HParams()
    hparams.defaults = {"data/batch_size": 64, "data/augment": "random_crop(padding=1)", "data/download": "true"}
    events, _, _ = run(tmp_path, make_trainer, [hparams], epochs=1)
    differing, names = _marked(events)
    # batch_size 32 and augment (null here) differ from the defaults given; download does not
    assert differing == ["Run", "data/augment", "data/batch_size"] and names[:3] == differing
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["data/download"].string_value == "true" and values["data/augment"].string_value == "null"
    assert readable([{"name": "random_crop", "padding": 1}, "hflip"]) == "random_crop(padding=1), hflip"
    assert readable((0.9, 0.999)) == "[0.9, 0.999]" and readable(False) == "false"
    assert flatten_settings({"net": {"class_path": "project.nn.ConvNet", "init_args": {"widths": [32, 64]}}}) == \
        {"net": "ConvNet", "net/widths": "[32, 64]"}


def test_a_study_marks_what_it_varies_not_what_its_baseline_changed(tmp_path, make_trainer):
    from project.monitor import study_varies

    hparams = HParams()
    hparams.defaults = {"data/batch_size": 64}
    with study_varies(["model.label_smoothing", "data/seed"]):
        events, _, _ = run(tmp_path, make_trainer, [hparams], epochs=1)
    assert _marked(events)[0] == ["Run", "data/seed", "model/label_smoothing"]


def test_final_weights_are_drawn_whatever_the_interval(tmp_path, make_trainer):
    events, _, _ = run(tmp_path, make_trainer, [Histograms(every_n_epochs=5)], epochs=3)
    assert [e.step for e in events.Histograms("weights/block0")] == [4, 12]  # epoch 1, and the last epoch's end


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


@pytest.mark.parametrize("lightning_log_level", ["INFO", "WARNING"])  # make compare quiets Lightning
def test_plain_progress_prints_one_line_per_epoch_then_why_fit_stopped(make_trainer, capsys, lightning_log_level):
    import logging

    QuietLightning.install()
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
