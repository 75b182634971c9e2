
import pytest
import torch
import torch.nn.functional as F

from project.data.datamodule import ImageDataModule
from project.model.classifier import ImageClassifier, weight_statistics
from project.model.nn import MLP, ConvNet


def _hand_accuracy(model, dm, split) -> float:
    """Accuracy by a plain PyTorch loop: eval mode, no augmentation, the whole split."""
    model.eval()
    with torch.no_grad():
        predictions = model(dm.prepare(split.images)).argmax(-1)
    return (predictions == split.labels).float().mean().item()


def test_clean_train_accuracy_gap_bias_and_variance_match_an_independent_eval(make_trainer):
    # Dropout and augmentation make the running training accuracy (train mode, augmented
    # images) lower than what the weights really do on training images.
    dm = ImageDataModule(batch_size=32, train_size=300, augment=[{"name": "rotation", "degrees": 40}, "erasing"])
    model = ImageClassifier(net=lambda s, c: ConvNet(s, c, widths=[16, 32], hidden=32, dropout=0.5),
                            human_accuracy=0.97)
    trainer = make_trainer(max_epochs=4, num_sanity_val_steps=0)
    trainer.fit(model, dm)
    metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
    assert {"train/loss", "train/acc", "train/acc_clean", "train/loss_clean", "val/loss", "val/acc",
            "val/acc_best", "gap/acc", "diagnosis/bias", "diagnosis/variance"} <= set(metrics)
    clean, val = _hand_accuracy(model, dm, dm.train_clean_set), _hand_accuracy(model, dm, dm.val_set)
    assert metrics["train/acc_clean"] == pytest.approx(clean, abs=1e-6)
    assert metrics["val/acc"] == pytest.approx(val, abs=1e-6)
    assert metrics["gap/acc"] == pytest.approx(clean - val, abs=1e-6)
    assert metrics["diagnosis/variance"] == pytest.approx(clean - val, abs=1e-6)
    assert metrics["diagnosis/bias"] == pytest.approx(0.97 - clean, abs=1e-6)
    with torch.no_grad():
        loss = F.cross_entropy(model(dm.prepare(dm.train_clean_set.images)), dm.train_clean_set.labels)
    assert metrics["train/loss_clean"] == pytest.approx(loss.item(), rel=1e-5)
    # the running accuracy is still logged, and here it is not the clean one
    assert metrics["train/acc"] != pytest.approx(clean, abs=1e-3)
    trainer.test(model, dm, verbose=False)
    assert {"test/loss", "test/acc"} <= set(trainer.callback_metrics)


def test_weight_statistics_count_exact_zeros_and_the_norm():
    net = MLP((1, 2, 2), 2, hidden=[3], norm="none")
    with torch.no_grad():
        net.blocks[0][0].weight.copy_(torch.tensor([[0.0, 3.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0005], [0.0] * 4]))
        net.head.weight.zero_()
    stats = weight_statistics(net)
    assert stats["weights/l2_norm"].item() == pytest.approx(5.0, rel=1e-6)
    assert stats["weights/zero_fraction"].item() == pytest.approx(15 / 18)  # 12 + 6 weights, 3 non-zero
    assert stats["weights/near_zero_fraction"].item() == pytest.approx(16 / 18)


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
    torch.manual_seed(0)
    model = ImageClassifier(label_smoothing=0.2, channels_last=False).eval()
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        logp = model(x).log_softmax(-1)
        train_loss = model.training_step((x, y), 0)
        model.validation_step((x, y), 0)
    # by hand: (1 - 0.2) * NLL(true class) + 0.2 * the mean over classes of NLL, averaged over the batch
    nll = -logp[torch.arange(6), y]
    smoothed = (0.8 * nll - 0.2 * logp.mean(dim=1)).mean()
    assert train_loss.item() == pytest.approx(smoothed.item(), rel=1e-5)
    # validation measures the plain cross-entropy: the number a user compares across runs
    assert model.val_loss.compute().item() == pytest.approx(nll.mean().item(), rel=1e-5)
    assert abs(smoothed - nll.mean()) > 1e-3  # the two differ, so the test tells them apart


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
    (dict(label_smoothing=1.0), r"model.label_smoothing=1.0; allowed: a number in \[0, 1\)"),
    (dict(warmup_steps=-1), "model.warmup_steps=-1; allowed: an integer >= 0"),
    (dict(warmup_start_factor=0.0), r"model.warmup_start_factor=0.0; allowed: a number in \(0, 1\]"),
    (dict(human_accuracy=1.5), r"model.human_accuracy=1.5; allowed: a number in \(0, 1\]"),
    (dict(diagnosis_tolerance=-0.1), r"model.diagnosis_tolerance=-0.1; allowed: a number in \[0, 1\)"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageClassifier(**kwargs)
