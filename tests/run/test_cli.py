import pytest
import torch

from project.model.callbacks import WeightPenalty
from project.model.classifier import ImageClassifier
from project.model.nn import layer_weights
from project.run.cli import ProjectCLI, main

QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_print_config_shows_every_part(capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", "--print_config"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for expected in ("class_path: project.model.nn.ConvNet", "class_path: torch.optim.Adam", "dataset: digits",
                     "penalty:", "EarlyStopping", "project.run.tensorboard.TensorBoard", "test_after_fit: true"):
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


def test_checkpoint_records_the_network_config_and_loads_it_back(tmp_path):
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--model.net=MLP", "--model.net.hidden=[24]",
                           "--model.net.init=orthogonal", "--test_after_fit=false", *QUICK])
    path = next(c for c in cli.trainer.callbacks if type(c).__name__ == "LastCheckpoint").last_model_path
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert hparams["net"]["class_path"] == "project.model.nn.MLP"
    assert hparams["net"]["init_args"]["init"] == "orthogonal"
    loaded = ImageClassifier.load_from_checkpoint(path)
    assert type(loaded.net).__name__ == "MLP" and loaded.net.blocks[0][0].out_features == 24
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(loaded.eval()(x), cli.model.eval()(x))


def test_not_a_terminal_gets_one_line_per_epoch(capsys):
    ProjectCLI(args=["fit", "--trainer.max_epochs=2", "--trainer.enable_model_summary=false", "--test_after_fit=false"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]


def test_early_stopping_key_stops_a_run_that_does_not_improve():
    # a rate of 1e-12, no normalization, no augmentation: val/loss moves by far less than min_delta, so
    # after the first epoch it never improves and patience 2 stops the run after epoch 3
    frozen = ["--model.optimizer.lr=1e-12", "--model.net.norm=none", "--data.augment=[]", "--model.scheduler=null",
              "--early_stopping.min_delta=0.001", "--trainer.max_epochs=10", "--test_after_fit=false", *QUICK]
    cli = ProjectCLI(args=["fit", *frozen, "--early_stopping.patience=2"])
    assert cli.trainer.current_epoch == 3 and cli.trainer.early_stopping_callback.monitor == "val/loss"
    cli = ProjectCLI(args=["fit", *frozen, "--early_stopping=null"])  # off: every epoch runs
    assert cli.trainer.current_epoch == 10 and cli.trainer.early_stopping_callback is None


def _summary_value(out: str, label: str) -> float:
    line = next(line for line in out.splitlines() if line.startswith(label))
    return float(line[len(label):].split()[0])


def test_summary_quotes_the_tested_checkpoints_own_figures(capsys):
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=6", "--data.train_size=300", *QUICK])
    out = capsys.readouterr().out
    best = cli.trainer.checkpoint_callback.best_model_path
    model, dm = ImageClassifier.load_from_checkpoint(best).eval(), cli.datamodule
    with torch.no_grad():
        val = (model(dm.prepare(dm.val_set.images)).argmax(-1) == dm.val_set.labels).float().mean().item()
        clean = (model(dm.prepare(dm.train_clean_set.images)).argmax(-1) == dm.train_clean_set.labels).float().mean().item()
    assert _summary_value(out, "val accuracy") == pytest.approx(val, abs=1e-4)
    assert _summary_value(out, "clean train acc") == pytest.approx(clean, abs=1e-4)
    epoch = torch.load(best, weights_only=True)["epoch"] + 1
    assert f"best checkpoint (by val/loss), after epoch {epoch}" in out
    assert _summary_value(out, "variance") == pytest.approx(clean - val, abs=1e-4)
    assert _summary_value(out, "bias") == pytest.approx(1 - clean, abs=1e-4)


def test_diagnosis_of_a_run_built_to_overfit(capsys):
    ProjectCLI(args=["fit", "--data.train_size=50", "--data.augment=[]", "--model.net.dropout=0",
                     "--trainer.max_epochs=40", "--early_stopping=null", "--test_ckpt=last", *QUICK])
    out = capsys.readouterr().out
    assert _summary_value(out, "bias") <= 0.02 and _summary_value(out, "variance") > 0.05
    assert "verdict   high variance (overfitting)" in out and "reduce variance: more data" in out


def test_diagnosis_of_a_run_built_to_underfit(capsys):
    ProjectCLI(args=["fit", "--model.optimizer.lr=0.00001", "--model.net.norm=none", "--trainer.max_epochs=2",
                     "--model.scheduler=null", *QUICK])
    out = capsys.readouterr().out
    assert _summary_value(out, "bias") > 0.3
    assert "verdict   high bias" in out and "reduce bias first: a bigger network" in out


def test_human_level_accuracy_moves_the_bias(capsys):
    ProjectCLI(args=["fit", "--trainer.max_epochs=2", "--model.human_accuracy=0.9", *QUICK])
    out = capsys.readouterr().out
    assert _summary_value(out, "bias") == pytest.approx(0.9 - _summary_value(out, "clean train acc"), abs=2e-4)


def test_resume_with_new_penalty_settings_uses_them(capsys):
    ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--test_after_fit=false", *QUICK])
    cli = ProjectCLI(args=["fit", "--ckpt_path=last", "--trainer.max_epochs=2", "--penalty.l2=0.5",
                           "--test_after_fit=false", *QUICK])
    penalty = next(c for c in cli.trainer.callbacks if isinstance(c, WeightPenalty))
    assert penalty.l2 == 0.5 and len(penalty._params) == len(layer_weights(cli.model)) == 5  # 3 convs, 2 linears
    assert cli.trainer.callback_metrics["train/penalty"].item() > 0
    assert "note: penalty settings" in capsys.readouterr().err


def test_gradient_norms_are_measured_after_the_penalty(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    l2 = 100.0
    cli = ProjectCLI(args=["fit", "--trainer.max_steps=1", "--trainer.log_every_n_steps=1", f"--penalty.l2={l2}",
                           "--early_stopping=null",
                           "--test_after_fit=false", *QUICK])
    events = EventAccumulator(str(tmp_path / "logs" / "default" / "version_0"))
    events.Reload()
    measured = events.Scalars("grad_norm/total")[0].value
    weights = torch.cat([w.detach().flatten() for w in layer_weights(cli.model)])
    # the penalty's gradient 2 * l2 * w dwarfs the loss's; one Adam step moves w by at most lr
    assert measured == pytest.approx(2 * l2 * weights.norm().item(), rel=0.2)


def test_environment_variables_configure_a_run(monkeypatch):
    monkeypatch.setenv("PL_FIT__TRAINER__MAX_EPOCHS", "2")
    monkeypatch.setenv("PL_FIT__MODEL__LABEL_SMOOTHING", "0.1")
    cli = ProjectCLI(args=["fit", "--test_after_fit=false", *QUICK])
    assert cli.trainer.max_epochs == 2 and cli.trainer.current_epoch == 2
    assert cli.model.hparams.label_smoothing == 0.1


def test_seed_everything_true_draws_a_seed_prints_and_saves_it(tmp_path, capsys):
    import yaml

    seeds = []
    for run in range(2):
        ProjectCLI(args=["fit", "--seed_everything=true", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                         "--test_after_fit=false", *QUICK])
        line = next(line for line in capsys.readouterr().err.splitlines() if "drew seed" in line)
        seed = int(line.split("drew seed ")[1].split()[0])
        saved = yaml.safe_load((tmp_path / "logs" / "default" / f"version_{run}" / "config.yaml").read_text())
        assert saved["seed_everything"] == seed
        seeds.append(seed)
    assert seeds[0] != seeds[1]


def test_the_top_level_optimizer_keys_are_gone(capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", "--optimizer=SGD", *QUICK])
    assert done.value.code == 2
    assert "optimizer=SGD is not a setting" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    help_text = capsys.readouterr().out
    assert "--model.optimizer" in help_text and "\n  --optimizer" not in help_text and "--lr_scheduler" not in help_text


def test_lightnings_lr_finder_callback_sets_the_rate_the_optimizer_uses():
    cli = ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--trainer.callbacks+=LearningRateFinder",
                           "--trainer.callbacks.num_training_steps=20", "--test_after_fit=false", *QUICK])
    assert cli.model.lr is not None and cli.model.lr != 0.003
    # the schedule starts from the found rate: cosine over one epoch ends at 0 from it
    assert cli.trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(cli.model.lr)
    assert cli.trainer.lr_scheduler_configs[0].scheduler.base_lrs == [pytest.approx(cli.model.lr)]


def test_fast_dev_run_says_there_are_no_logs(capsys):
    ProjectCLI(args=["fit", "--trainer.fast_dev_run=true", *QUICK])
    out = capsys.readouterr().out
    assert "logs                none" in out and "None" not in out
