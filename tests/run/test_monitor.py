import pytest
import torch
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from project.data.datamodule import ImageDataModule
from project.model.callbacks import WeightPenalty
from project.model.classifier import ImageClassifier
from project.run.hparams import HParams
from project.run.monitor import GradientNorms, Histograms, Pictures, StepLearningRate


def all_callbacks(**histograms):
    return [StepLearningRate(logging_interval="step"), WeightPenalty(l2=0.01), GradientNorms(),
            Histograms(every_n_epochs=1, num_samples=20, **histograms), Pictures(every_n_epochs=1), HParams()]


def test_everything_lands_in_tensorboard(tensorboard_run):
    events, model, dm = tensorboard_run(all_callbacks())
    tags = events.Tags()
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "gap/acc", "test/loss",
                "test/acc", "train/penalty", "lr-SGD", "grad_norm/total", "grad_norm/block0", "grad_norm/head0", "grad_norm/logits"):
        assert tag in tags["scalars"], tag
    # the logged learning rate is the scheduler's: 0.1 for epoch 0 (steps 0-3), 0.05 for epoch 1 (steps
    # 4-7), written where it changes, so the chart is that step function and not a ramp between epochs
    lrs = [(e.step, e.value) for e in events.Scalars("lr-SGD")]
    assert lrs == [(0, pytest.approx(0.1)), (3, pytest.approx(0.1)), (4, pytest.approx(0.05)), (7, pytest.approx(0.05))]
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
    assert start["model/optimizer"].string_value.endswith("run.<locals>.<lambda>")  # a Python callable, by name
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


def test_final_weights_are_drawn_whatever_the_interval(tensorboard_run):
    events, _, _ = tensorboard_run([Histograms(every_n_epochs=5)], epochs=3)
    assert [e.step for e in events.Histograms("weights/block0")] == [4, 12]  # epoch 1, and the last epoch's end


def test_turning_options_off_removes_their_tags(tensorboard_run):
    callbacks = [Histograms(every_n_epochs=1, weights=False, gradients=False), Pictures(every_n_epochs=0)]
    events, _, _ = tensorboard_run(callbacks, epochs=1)
    histograms = events.Tags()["histograms"]
    assert histograms and all(t.startswith("activations/") for t in histograms)
    assert "val/confusion_matrix" not in events.Tags()["images"]
    assert "test/confusion_matrix" in events.Tags()["images"]
    events, _, _ = tensorboard_run([Histograms(every_n_epochs=0)], epochs=1)  # a second run: version_1
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


def test_the_rate_is_written_where_it_changes_and_draws_every_schedule(tmp_path, make_trainer):
    """A warm-up changes the rate every step: every step is written. A constant rate: its first and
    last step. Between two written points TensorBoard draws a line, so each chart is the schedule."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def rates(**model):
        torch.manual_seed(0)
        logger = TensorBoardLogger(tmp_path, name="lr", default_hp_metric=False)
        trainer = make_trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=1, logger=logger,
                               callbacks=[StepLearningRate(logging_interval="step")], enable_autolog_hparams=False)
        trainer.fit(ImageClassifier(optimizer=lambda p: torch.optim.SGD(p, lr=0.1), **model), ImageDataModule(batch_size=32))
        events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0})
        events.Reload()
        return [(e.step, round(e.value, 6)) for e in events.Scalars("lr-SGD")]

    warm = rates(warmup_steps=4, warmup_start_factor=0.25)
    assert [s for s, _ in warm] == list(range(5)) + [7]  # the warm-up's 4 steps and the rate it reaches, then the end
    assert [v for _, v in warm] == [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1]
    assert rates() == [(0, 0.1), (7, 0.1)]


def test_gradient_norms_are_the_gradients_own(tensorboard_run):
    """The logged norms equal torch's on the gradients of that step (captured by hand after the monitor)."""
    from lightning.pytorch import Callback

    seen = {}

    class Capture(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == 2:  # a logging step (log_every_n_steps=2)
                seen["block0"] = float(pl_module.net.blocks[0][0].weight.grad.norm())
                seen["logits"] = float(pl_module.net.head[4].weight.grad.norm())
                seen["total"] = float(torch.nn.utils.get_total_norm([p.grad for p in pl_module.parameters()]))

    events, _, _ = tensorboard_run([GradientNorms(), Capture()], epochs=1)
    for name, value in seen.items():
        logged = {e.step: e.value for e in events.Scalars(f"grad_norm/{name}")}
        assert logged[2] == pytest.approx(value, rel=1e-5), name
