import math

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    LambdaLR,
    MultiplicativeLR,
    OneCycleLR,
    PolynomialLR,
    ReduceLROnPlateau,
    StepLR,
)

from project.data.datamodule import ImageDataModule
from project.model.classifier import ImageClassifier
from project.model.nn import MLP
from project.model.schedules import ConstantFactor, ExponentialDecay, LinearDecay, StepDecay
from project.run.cli import main


def run_schedule(make_trainer, scheduler, warmup_steps=0, epochs=3, batches=5, max_steps=-1):
    lrs = []

    class Record(ImageClassifier):
        def on_train_batch_start(self, batch, batch_idx):
            lrs.append(self.optimizers().param_groups[0]["lr"])

    model = Record(net=lambda shape, classes: MLP(shape, classes, hidden=[16]),
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.1), scheduler=scheduler,
                   warmup_steps=warmup_steps)
    trainer = make_trainer(max_epochs=epochs, limit_train_batches=batches, limit_val_batches=1, max_steps=max_steps)
    trainer.fit(model, ImageDataModule(batch_size=16, augment=[]))
    return lrs, trainer


def torch_schedule(make, per_batch: bool, epochs=3, batches=5):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler, lrs = make(optimizer), []
    for _ in range(epochs):
        for _ in range(batches):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_batch:
                scheduler.step()
        if not per_batch:
            scheduler.step()
    return lrs


def test_epoch_scheduler_steps_per_epoch(make_trainer):
    make = lambda o: StepLR(o, step_size=1, gamma=0.5)  # noqa: E731
    lrs, _ = run_schedule(make_trainer, make)
    assert lrs == pytest.approx(torch_schedule(make, per_batch=False))
    assert lrs[:5] == [0.1] * 5 and lrs[5] == pytest.approx(0.05)


def test_one_cycle_steps_per_batch_and_learns_its_length(make_trainer):
    lrs, trainer = run_schedule(make_trainer, lambda o, **kw: OneCycleLR(o, max_lr=0.5, **kw))
    expected = torch_schedule(lambda o: OneCycleLR(o, max_lr=0.5, total_steps=15), per_batch=True)
    assert lrs == pytest.approx(expected)
    assert trainer.lr_scheduler_configs[0].interval == "step"


def test_warmup_multiplies_onto_an_epoch_schedule(make_trainer):
    lrs, _ = run_schedule(make_trainer, lambda o: StepLR(o, step_size=1, gamma=0.5), warmup_steps=4)
    hand = [0.1 * (0.1 + 0.9 * min(t, 4) / 4) * 0.5 ** (t // 5) for t in range(15)]
    assert lrs == pytest.approx(hand)


def test_plateau_watches_val_loss(make_trainer):
    _, trainer = run_schedule(make_trainer, lambda o: ReduceLROnPlateau(o, patience=0), epochs=1)
    config = trainer.lr_scheduler_configs[0]
    assert config.monitor == "val/loss" and config.interval == "epoch"


def test_warmup_refuses_schedules_that_set_the_rate_themselves(make_trainer):
    with pytest.raises(ValueError, match="warmup_steps=3 cannot be combined with OneCycleLR.*pct_start"):
        run_schedule(make_trainer, lambda o, **kw: OneCycleLR(o, max_lr=0.5, total_steps=100), warmup_steps=3)


@pytest.mark.parametrize("epochs,max_steps,expected_t_max", [(3, -1, 3), (10, -1, 10), (10, 12, 3)])
def test_cosine_length_left_out_is_the_run_length(make_trainer, epochs, max_steps, expected_t_max):
    lrs, trainer = run_schedule(make_trainer, lambda o: CosineAnnealingLR(o, T_max=None), epochs=epochs,
                                max_steps=max_steps)
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == expected_t_max
    hand = [0.05 * (1 + math.cos(math.pi * (t // 5) / expected_t_max)) for t in range(len(lrs))]
    assert lrs == pytest.approx(hand)


def test_a_given_length_is_kept(make_trainer):
    _, trainer = run_schedule(make_trainer, lambda o: CosineAnnealingLR(o, T_max=7))
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == 7


def test_polynomial_decay_reaches_zero_at_the_end_of_the_run(make_trainer):
    lrs, _ = run_schedule(make_trainer, lambda o: PolynomialLR(o, total_iters=None, power=1.0), epochs=4)
    assert lrs == pytest.approx([0.1 * (1 - (t // 5) / 4) for t in range(20)])


# The lecture's LambdaLR / MultiplicativeLR examples, one config line each, against their formulas.
NAMED = [
    (lambda o: LambdaLR(o, ExponentialDecay(0.5)), lambda e: 0.1 * 0.5**e),
    (lambda o: LambdaLR(o, StepDecay(step_size=2, gamma=0.5)), lambda e: 0.1 * 0.5 ** (e // 2)),
    (lambda o: LambdaLR(o, LinearDecay(end=0.2)), lambda e: 0.1 * (1 - 0.8 * e / 4)),
    (lambda o: LambdaLR(o, LinearDecay(total=2)), lambda e: 0.1 * max(0.0, 1 - e / 2)),
    (lambda o: MultiplicativeLR(o, ConstantFactor(0.5)), lambda e: 0.1 * 0.5**e),
]


@pytest.mark.parametrize("scheduler,formula", NAMED)
def test_named_schedule_functions_follow_their_formula(make_trainer, scheduler, formula):
    lrs, _ = run_schedule(make_trainer, scheduler, epochs=4)
    assert lrs == pytest.approx([formula(t // 5) for t in range(20)])


def test_named_schedule_function_from_a_yaml_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lambda.yaml").write_text(
        "model:\n  scheduler:\n    class_path: torch.optim.lr_scheduler.LambdaLR\n    init_args:\n"
        "      lr_lambda: {class_path: project.model.schedules.ExponentialDecay, init_args: {factor: 0.5}}\n")
    from project.run.cli import ProjectCLI

    cli = ProjectCLI(args=["fit", "--config", "lambda.yaml", "--trainer.max_epochs=2", "--test_after_fit=false",
                           "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(scheduler, LambdaLR) and scheduler.lr_lambdas[0].factor == 0.5
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.003 * 0.25)


@pytest.mark.parametrize("make,message", [
    (lambda: ExponentialDecay(0), r"ExponentialDecay.factor=0; allowed: a number in \(0, 1\]"),
    (lambda: ConstantFactor(1.5), r"ConstantFactor.factor=1.5; allowed: a number in \(0, 1\]"),
    (lambda: LinearDecay(total=0), "LinearDecay.total=0; allowed: a positive number of epochs"),
    (lambda: LinearDecay(end=2), r"LinearDecay.end=2; allowed: a number in \[0, 1\]"),
    (lambda: StepDecay(step_size=0), "StepDecay.step_size=0; allowed: an integer >= 1"),
    (lambda: StepDecay(gamma=float("nan")), r"StepDecay.gamma=nan; allowed: a number in \(0, 1\]"),
])
def test_named_schedule_functions_check_their_settings(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("scheduler", [lambda o: CosineAnnealingLR(o, T_max=None),
                                       lambda o: ExponentialLR(o, gamma=0.7),
                                       lambda o: MultiplicativeLR(o, ConstantFactor(0.7))])
def test_warmup_multiplies_and_never_exceeds_the_schedule(make_trainer, scheduler):
    plain, _ = run_schedule(make_trainer, scheduler)
    warm, _ = run_schedule(make_trainer, scheduler, warmup_steps=7)
    factor = [0.1 + 0.9 * min(t, 7) / 7 for t in range(15)]
    assert warm == pytest.approx([f * lr for f, lr in zip(factor, plain)])
    assert all(w <= p + 1e-12 for w, p in zip(warm, plain))


@pytest.mark.parametrize("scheduler,name", [
    (lambda o: LambdaLR(o, ExponentialDecay(0.9)), "LambdaLR"),
    (lambda o: CosineAnnealingWarmRestarts(o, T_0=2), "CosineAnnealingWarmRestarts"),
])
def test_warmup_is_refused_where_it_would_overshoot(scheduler, name):
    with pytest.raises(ValueError, match=f"warmup_steps=5 cannot be combined with {name}.*overshoot"):
        ImageClassifier(scheduler=scheduler, warmup_steps=5)


def test_endless_run_with_a_run_length_schedule_stops_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["fit", "--trainer.max_epochs=-1"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "trainer.max_epochs=-1" in err and "CosineAnnealingLR" in err and "T_max" in err
    assert not (tmp_path / "logs").exists()
