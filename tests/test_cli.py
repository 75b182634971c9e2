import pytest
import torch

from project.cli import ProjectCLI, main
from project.model import ImageClassifier

QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_print_config_shows_every_part(capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", "--print_config"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for expected in ("class_path: project.nn.ConvNet", "class_path: torch.optim.Adam", "dataset: digits",
                     "penalty:", "EarlyStopping", "TensorBoardLogger", "test_after_fit: true"):
        assert expected in out


def test_fit_tests_the_best_checkpoint_and_prints_a_summary(tmp_path, capsys):
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=3", *QUICK])
    out = capsys.readouterr().out
    assert "Run summary" in out and "test accuracy" in out and "best checkpoint" in out
    best = cli.trainer.checkpoint_callback.best_model_path
    assert best and (tmp_path / "logs" / "default" / "version_0" / "checkpoints").is_dir()
    # the reported test accuracy is the best checkpoint's, computed here by hand
    model = ImageClassifier.load_from_checkpoint(best).eval()
    dm = cli.datamodule
    with torch.no_grad():
        hand = (model(dm.prepare(dm.test_set.images)).argmax(-1) == dm.test_set.labels).float().mean().item()
    assert cli.trainer.callback_metrics["test/acc"].item() == pytest.approx(hand, abs=1e-6)
    assert f"{hand:.4f}" in out


def test_mlp_and_optimizer_switch_from_flags(capsys):
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--model.net=MLP", "--model.net.hidden=[32,16]",
                           "--model.optimizer=SGD", "--model.optimizer.lr=0.05", "--model.optimizer.momentum=0.9",
                           "--model.scheduler=CosineAnnealingLR", "--model.scheduler.T_max=5",
                           "--test_after_fit=false", *QUICK])
    assert [m.out_features for m in cli.model.net.modules() if isinstance(m, torch.nn.Linear)] == [32, 16, 10]
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9


BAD_INPUTS = [
    (["--model.net.init_args.norm=weight"], "norm='weight' is not known; choose one of ['batch'"),
    (["--model.net.init_args.dropout=1.5"], "dropout=1.5 must be in [0, 1)"),
    (["--model.net.init_args.widths=[]"], "widths=[] must be a non-empty list"),
    (["--model.net.init_args.init=he"], "init='he' is not known"),
    (["--model.net.init_args.norm=group", "--model.net.init_args.norm_groups=5"], "norm_groups=5"),
    (["--model.label_smoothing=2"], "model.label_smoothing=2.0 must be in [0, 1)"),
    (["--data.dataset=imagenet"], "data.dataset"),
    (["--data.val_fraction=0"], "data.val_fraction=0.0 must be in (0, 1)"),
    (["--data.augment=[mixup]"], "augment name 'mixup' is not known"),
    (["--data.batch_size=zero"], "data.batch_size"),
    (["--trainer.max_epochs=ten"], "trainer.max_epochs"),
    (["--model.nonsense=1"], "nonsense"),
    (["--nonsense=1"], "unrecognized arguments: --nonsense=1"),
    (["--model.optimizer=SGD", "--model.optimizer.lr=-1"], "model.optimizer: Invalid learning rate: -1.0"),
    (["--model.optimizer.lr=abc"], 'Parser key "model.optimizer"'),
    (["--model.optimizer=Adamm"], 'Parser key "model.optimizer"'),
    (["--model.scheduler=StepLR"], "the following arguments are required: step_size"),
    (["--model.scheduler=OneCycleLR", "--model.scheduler.max_lr=0.1", "--model.warmup_steps=10"],
     "model.warmup_steps=10 cannot be combined with OneCycleLR"),
    (["--model.optimizer=SGD", "--model.optimizer.lr=0.1", "--model.optimizer.momentum=-1"],
     "model.optimizer: Invalid momentum value: -1.0"),
    (["--model.warmup_steps=-3"], "model.warmup_steps=-3 must be >= 0"),
    (["--model.net.init_args.init_kwargs={sd: 1}"], "init_kwargs has unknown keys ['sd']"),
    (["--penalty.l1=-0.5"], "WeightPenalty.l1=-0.5 must be a finite number >= 0"),
    (["--penalty.l2=abc"], 'Parser key "penalty.l2"'),
    (["--early_stopping.mode=up"], "mode"),
    (["--early_stopping.patience=soon"], 'Parser key "early_stopping"'),
    (["--trainer.precision=17"], 'Parser key "trainer.precision"'),
    (["--trainer.devices=0"], "devices='0')` value is not a valid input"),
    (["--trainer.max_epochs=-5"], "`max_epochs` must be a non-negative integer or -1. You passed in -5."),
    (["--trainer.accelerator=tpu"], "torch_xla"),
    (["--data.normalize=zscore"], "Expected a typing.Literal['standardize', 'minmax', 'none']. Got value: zscore"),
    (["--data.fake_shape=[1,2]"], 'Parser key "data.fake_shape": Expected a tuple with 3 elements'),
    (["--data.augment=[{name: rotation, degrees: -5}]"], "rotation.degrees=-5 must be >= 0"),
    (["--data.num_workers=-1"], "data.num_workers=-1 must be >= 0"),
    (["--test_ckpt=middle"], "Expected a typing.Literal['best', 'last']. Got value: middle"),
    (["--seed_everything=abc"], 'Parser key "seed_everything"'),
]


@pytest.mark.parametrize("flags,message", BAD_INPUTS)
def test_bad_input_stops_before_any_work(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as done:
        main(["fit", *flags, *QUICK])
    assert done.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_checkpoint_records_the_network_config_and_loads_it_back(tmp_path):
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--model.net=MLP", "--model.net.hidden=[24]",
                           "--model.net.init=orthogonal", "--test_after_fit=false", *QUICK])
    path = cli.trainer.checkpoint_callback.last_model_path
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert hparams["net"]["class_path"] == "project.nn.MLP"
    assert hparams["net"]["init_args"]["init"] == "orthogonal"
    loaded = ImageClassifier.load_from_checkpoint(path)
    assert type(loaded.net).__name__ == "MLP" and loaded.net.blocks[0][0].out_features == 24
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(loaded.eval()(x), cli.model.eval()(x))


def test_not_a_terminal_gets_one_line_per_epoch(capsys):
    ProjectCLI(args=["fit", "--trainer.max_epochs=2", "--trainer.enable_model_summary=false", "--test_after_fit=false"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]


def test_early_stopping_and_penalty_have_their_own_keys():
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--penalty.l2=0.01", "--early_stopping.patience=2",
                           "--test_after_fit=false", *QUICK])
    penalty = [c for c in cli.trainer.callbacks if type(c).__name__ == "WeightPenalty"]
    stopping = [c for c in cli.trainer.callbacks if type(c).__name__ == "EarlyStopping"]
    assert len(penalty) == 1 and penalty[0].l2 == 0.01
    assert len(stopping) == 1 and stopping[0].patience == 2 and stopping[0].monitor == "val/loss"
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--early_stopping=null", "--test_after_fit=false", *QUICK])
    assert not [c for c in cli.trainer.callbacks if type(c).__name__ == "EarlyStopping"]
