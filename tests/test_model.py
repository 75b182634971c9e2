import pytest
import torch
import torch.nn.functional as F

from project.model import ImageClassifier
from project.nn import MLP, ConvNet


def test_logs_stage_metrics_and_the_gap(make_trainer, digits):
    model = ImageClassifier()
    trainer = make_trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2, num_sanity_val_steps=0)
    trainer.fit(model, digits)
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "gap/acc"} <= set(metrics)
    assert metrics["gap/acc"].item() == pytest.approx((metrics["train/acc"] - metrics["val/acc"]).item(), abs=1e-6)
    trainer.test(model, digits, verbose=False)
    assert {"test/loss", "test/acc"} <= set(trainer.callback_metrics)


def test_validation_accuracy_is_over_the_whole_split(make_trainer, digits):
    model = ImageClassifier()
    trainer = make_trainer(max_steps=3, num_sanity_val_steps=0)
    trainer.fit(model, digits)
    trainer.validate(model, digits, verbose=False)
    model.eval()
    with torch.no_grad():
        predictions = model(digits.prepare(digits.val_set.images)).argmax(-1)
    hand = (predictions == digits.val_set.labels).float().mean().item()
    assert trainer.callback_metrics["val/acc"].item() == pytest.approx(hand, abs=1e-6)


def test_predict_returns_class_probabilities(make_trainer, digits):
    model = ImageClassifier()
    batches = make_trainer().predict(model, digits)
    probs = torch.cat(batches)
    assert probs.shape == (360, 10)
    assert torch.allclose(probs.sum(-1), torch.ones(360), atol=1e-5) and (probs >= 0).all()


def test_label_smoothing_applies_to_the_training_loss_only():
    model = ImageClassifier(label_smoothing=0.2)
    logits = torch.tensor([[2.0, 0.0, -1.0] + [0.0] * 7])
    y = torch.tensor([0])
    smooth = F.cross_entropy(logits, y, label_smoothing=0.2)
    # by hand: (1 - 0.2) * NLL(true) + 0.2 * mean over classes of NLL
    logp = logits.log_softmax(-1)
    assert smooth.item() == pytest.approx((-(0.8 * logp[0, 0]) - 0.2 * logp.mean()).item(), rel=1e-6)
    assert model.hparams.label_smoothing == 0.2


def test_net_is_built_for_the_data_shape():
    model = ImageClassifier(net=lambda s, c: MLP(s, c, hidden=[8]), num_classes=3, input_shape=(3, 32, 32))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert isinstance(ImageClassifier().net, ConvNet)


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    plain = ImageClassifier(channels_last=False).eval()
    fast = ImageClassifier(channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(plain(x), fast(x), atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(label_smoothing=1.0), r"model.label_smoothing=1.0 must be in \[0, 1\)"),
    (dict(warmup_steps=-1), "model.warmup_steps=-1 must be >= 0"),
    (dict(warmup_start_factor=0.0), r"model.warmup_start_factor=0.0 must be in \(0, 1\]"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageClassifier(**kwargs)
