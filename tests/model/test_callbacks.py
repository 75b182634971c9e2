import copy

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from project.data.datamodule import ImageDataModule
from project.model.callbacks import NonFiniteLossError, NonFiniteLossGuard, WeightPenalty
from project.model.classifier import ImageClassifier
from project.model.nn import MLP

torch.manual_seed(0)
X, Y = torch.randn(16, 3), torch.randint(0, 2, (16,))


def loader(batch_size=8):
    return DataLoader(TensorDataset(X, Y), batch_size=batch_size, shuffle=False)


class Tiny(LightningModule):
    """Two linear layers around a batch norm; records the gradients the optimizer is given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        self.grads = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def on_before_optimizer_step(self, optimizer):
        self.grads = {n: p.grad.detach().clone() for n, p in self.named_parameters()}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def plain_grads(model: Tiny, batches, autocast=False):
    """Gradients of the mean loss over micro-batches, on an untouched copy of the model."""
    twin = copy.deepcopy(model.net).train()
    for x, y in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(twin(x), y) / len(batches)
        loss.backward()
    return {f"net.{n}": p.grad for n, p in twin.named_parameters()}


WEIGHTS = {"net.0.weight", "net.2.weight"}


@pytest.mark.parametrize("accumulate,precision,tol", [(1, "32-true", 1e-6), (2, "32-true", 1e-6),
                                                      (1, "bf16-mixed", 2e-2)])
def test_weight_penalty_gradient_equals_explicit_penalty(make_trainer, accumulate, precision, tol):
    model = Tiny()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    batches = [(X[:8], Y[:8]), (X[8:], Y[8:])][:accumulate]
    expected = plain_grads(model, batches, autocast=precision == "bf16-mixed")
    l1, l2 = 0.01, 0.05
    trainer = make_trainer(max_steps=1, accumulate_grad_batches=accumulate, precision=precision,
                           callbacks=[WeightPenalty(l1=l1, l2=l2, l1_mode="subgradient")])
    trainer.fit(model, loader())
    for name, grad in model.grads.items():
        want = expected[name]
        if name in WEIGHTS:
            w = initial[name]
            want = want + l1 * torch.sign(w) + 2 * l2 * w
        assert torch.allclose(grad, want, atol=tol, rtol=tol), name
    hand = sum(l1 * initial[n].abs().sum() + l2 * initial[n].pow(2).sum() for n in WEIGHTS)
    assert trainer.callback_metrics["train/penalty"].item() == pytest.approx(hand.item(), rel=1e-5)


def test_weight_penalty_can_include_biases_and_norms(make_trainer):
    model = Tiny()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = plain_grads(model, [(X[:8], Y[:8])])
    make_trainer(max_steps=1, callbacks=[WeightPenalty(l2=0.1, include_bias_and_norm=True)]).fit(model, loader())
    for name, grad in model.grads.items():
        assert torch.allclose(grad, expected[name] + 0.2 * initial[name], atol=1e-6), name


def test_zero_penalty_changes_nothing_and_logs_nothing(make_trainer):
    model = Tiny()
    expected = plain_grads(model, [(X[:8], Y[:8])])
    trainer = make_trainer(max_steps=1, callbacks=[WeightPenalty()])
    trainer.fit(model, loader())
    assert all(torch.allclose(model.grads[n], expected[n], atol=1e-6) for n in expected)
    assert "train/penalty" not in trainer.callback_metrics


@pytest.mark.parametrize("kwargs,message", [
    (dict(l1=-0.1), r"penalty.l1=-0.1; allowed: a finite number >= 0"),
    (dict(l2=float("nan")), r"penalty.l2=nan; allowed: a finite number >= 0"),
    (dict(l2=float("inf")), r"penalty.l2=inf; allowed"),
    (dict(l1=0.1, l1_mode="lasso"), r"penalty.l1_mode=lasso is not known; allowed: proximal, subgradient"),
])
def test_weight_penalty_rejects_bad_coefficients(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeightPenalty(**kwargs)


class NaNAt(Tiny):
    def __init__(self, step):
        super().__init__()
        self.nan_step = step

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step == self.nan_step else loss


def test_non_finite_loss_stops_at_the_step_and_keeps_good_checkpoint(make_trainer, tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=2, save_top_k=-1)
    trainer = make_trainer(max_epochs=10, enable_checkpointing=True, callbacks=[checkpoints, NonFiniteLossGuard()])
    with pytest.raises(NonFiniteLossError, match=r"train/loss=nan at step 5 \(epoch 2\).*last good checkpoint is .*last.ckpt; "
                       "allowed: a finite loss: a lower learning rate"):
        trainer.fit(NaNAt(5), loader())
    assert trainer.global_step == 5
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_proximal_l1_soft_thresholds_after_each_step(make_trainer):
    model = Tiny()  # SGD, lr 0.1
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = plain_grads(model, [(X[:8], Y[:8])])
    l1 = 2.0  # threshold lr * l1 = 0.2
    make_trainer(max_steps=1, callbacks=[WeightPenalty(l1=l1)]).fit(model, loader())
    zeros = 0
    for name, p in model.named_parameters():
        want = initial[name] - 0.1 * grads[name]
        if name in WEIGHTS:
            want = torch.sign(want) * (want.abs() - 0.2).clamp_min(0)
            zeros += int((p == 0).sum())
        assert torch.allclose(p.detach(), want, atol=1e-6), name
    assert zeros > 0


def _l1_run(make_trainer, mode):
    model = ImageClassifier(net=lambda s, c: MLP(s, c, hidden=[32], norm="none", dropout=0.0),
                            optimizer=lambda p: torch.optim.SGD(p, lr=0.1), channels_last=False)
    trainer = make_trainer(max_epochs=3, num_sanity_val_steps=0, callbacks=[WeightPenalty(l1=0.02, l1_mode=mode)])
    trainer.fit(model, ImageDataModule(batch_size=32, augment=[]))
    weights = torch.cat([model.net.blocks[0][0].weight.flatten(), model.net.head.weight.flatten()])
    return trainer.callback_metrics, weights


def test_l1_proximal_makes_exact_zeros_and_subgradient_does_not(make_trainer):
    metrics, weights = _l1_run(make_trainer, "proximal")
    zero_fraction = (weights == 0).float().mean().item()
    assert zero_fraction > 0.2
    assert metrics["weights/zero_fraction"].item() == pytest.approx(zero_fraction, abs=1e-6)
    metrics, weights = _l1_run(make_trainer, "subgradient")
    assert (weights == 0).sum() == 0 and metrics["weights/zero_fraction"].item() == 0
    assert metrics["weights/near_zero_fraction"].item() > 0  # small, never exactly zero


def test_proximal_l1_under_adam_thresholds_by_each_weights_own_step(make_trainer):
    class TinyAdam(Tiny):
        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    model = TinyAdam()
    twin = copy.deepcopy(model.net)
    optimizer = torch.optim.Adam(twin.parameters(), lr=0.01)
    l1 = 1e-3
    make_trainer(max_steps=2, callbacks=[WeightPenalty(l1=l1)]).fit(model, loader())
    # the same two steps by hand: Adam's step, then w <- sign(w) max(|w| - lr l1 / (sqrt(v_hat) + eps), 0)
    for x, y in (loader().dataset[:8], loader().dataset[8:]):
        optimizer.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        optimizer.step()
        with torch.no_grad():
            for index in (0, 2):
                w = twin[index].weight
                state = optimizer.state[w]
                v_hat = state["exp_avg_sq"] / (1 - 0.999 ** float(state["step"]))
                w.copy_(torch.sign(w) * (w.abs() - 0.01 * l1 / (v_hat.sqrt() + 1e-8)).clamp_min(0))
    for (name, p), want in zip(model.net.named_parameters(), twin.parameters()):
        assert torch.allclose(p.detach(), want.detach(), atol=1e-6), name


def test_l1_at_1e_3_makes_exact_zeros_under_adam(make_trainer):
    model = ImageClassifier(net=lambda s, c: MLP(s, c, hidden=[32], norm="none", dropout=0.0),
                            optimizer=lambda p: torch.optim.Adam(p, lr=0.002), channels_last=False)
    trainer = make_trainer(max_epochs=3, num_sanity_val_steps=0, callbacks=[WeightPenalty(l1=1e-3)])
    trainer.fit(model, ImageDataModule(batch_size=32, augment=[]))
    weights = torch.cat([model.net.blocks[0][0].weight.flatten(), model.net.head.weight.flatten()])
    # with a plain lr * l1 = 2e-6 threshold this was 0 exact zeros
    assert (weights == 0).float().mean().item() > 0.05
