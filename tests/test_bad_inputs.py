"""Bad input, as a new user types it: one line on stderr naming the setting, exit 2, nothing made.

Every case runs `project fit` in-process and asserts the exit code, that stderr is exactly one
`error: ...` line naming the setting, that nothing was printed before it, and that no log folder
exists. The legitimate settings next to them (no logger, no checkpointing, a last batch of one
sample) must train.
"""

import gzip
import math
import re

import numpy as np
import pytest
import yaml

from project.run.cli import DEFAULT_CONFIG, main
from tests.data.test_datasets import write_idx, write_mnist

# A callback added with --trainer.callbacks+= comes after the default config's.
NEXT = len(yaml.safe_load(DEFAULT_CONFIG.read_text())["trainer"]["callbacks"])
QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.max_epochs=1"]
STEP = ["--model.scheduler=StepLR", "--model.scheduler.step_size=2"]
PLATEAU = "--model.scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau"
ONE_CYCLE = ["--model.scheduler=OneCycleLR", "--model.scheduler.max_lr=0.1"]


def aug(spec: str) -> str:
    return f"--data.augment=[{spec}]"


# (flags, the setting the line must name)
CASES = [
    # the network
    (["--model.net.norm=weight"], "model.net.norm=weight"),
    (["--model.net.activation=swish"], "model.net.activation=swish"),
    (["--model.net.init=he"], "model.net.init=he"),
    (["--model.net.dropout=1.5"], "model.net.dropout=1.5"),
    (["--model.net.dropout=-0.1"], "model.net.dropout=-0.1"),
    (["--model.net.conv_dropout=1"], "model.net.conv_dropout=1.0"),
    (["--model.net.widths=[]"], "model.net.widths=[]"),
    (["--model.net.widths=[0, 8]"], "model.net.widths=[0, 8]"),
    (["--model.net.widths=abc"], "model.net.widths=abc"),
    (["--model.net.hidden=-1"], "model.net.hidden=-1"),
    (["--model.net.norm=group", "--model.net.norm_groups=5"], "model.net.norm_groups=5"),
    (["--model.net.init_kwargs={std: -1}"], "model.net.init_kwargs.std=-1.0"),
    (["--model.net.init_kwargs={gain: 0}"], "model.net.init_kwargs.gain=0.0"),
    (["--model.net.init_kwargs={low: 1, high: 0}"], "model.net.init_kwargs.low=1.0"),
    (["--model.net.init_kwargs={value: .nan}"], "model.net.init_kwargs.value=nan"),
    (["--model.net.init_kwargs={a: -2}"], "model.net.init_kwargs.a=-2.0"),
    (["--model.net.init_kwargs={sd: 1}"], "model.net.init_kwargs.sd=1.0"),
    (["--model.net.init_kwargs=abc"], "model.net.init_kwargs=abc"),
    (["--model.net=Foo"], "model.net=Foo"),
    (["--model.net=MLP", "--model.net.hidden=[]"], "model.net.hidden=[]"),
    (["--model.net=MLP", "--model.net.norm=instance"], "model.net.norm=instance"),
    (["--model.net.widths=[100000]"], "data.eval_batch_size=512"),
    (["--model.net=MLP", "--model.net.hidden=[200000, 200000]"], "model.net=MLP(hidden=[200000, 200000])"),
    # the model
    (["--model.label_smoothing=2"], "model.label_smoothing=2.0"),
    (["--model.warmup_steps=-3"], "model.warmup_steps=-3"),
    (["--model.warmup_start_factor=0"], "model.warmup_start_factor=0.0"),
    (["--model.human_accuracy=1.5"], "model.human_accuracy=1.5"),
    (["--model.diagnosis_tolerance=-1"], "model.diagnosis_tolerance=-1.0"),
    (["--model.nonsense=1"], "model.nonsense=1"),
    (["--model.optimizr.lr=1"], "model.optimizr.lr=1"),
    (["--nonsense=1"], "nonsense=1"),
    (["--model.net.dropuot=0.1"], "model.net.dropuot=0.1 is not a setting of ConvNet (did you mean dropout?)"),
    (["--model.optimizer.lrr=0.1"], "model.optimizer.lrr=0.1 is not a setting of Adam (did you mean lr?)"),
    # the optimizer
    (["--model.optimizer.lr=abc"], "model.optimizer.lr=abc"),
    (["--model.optimizer.lr=nan"], "model.optimizer.lr=nan"),
    (["--model.optimizer.lr=.inf"], "model.optimizer.lr=inf"),
    (["--model.optimizer=SGD", "--model.optimizer.lr=-1"], "model.optimizer.lr=-1.0"),
    (["--model.optimizer=Adamm"], "model.optimizer=Adamm"),
    (["--model.optimizer.betas=[0.9]"], "model.optimizer.betas=[0.9]"),
    (["--model.optimizer.betas=[0.9, 1.5]"], "model.optimizer.betas=[0.9, 1.5]"),
    (["--model.optimizer.eps=.nan"], "model.optimizer.eps=nan"),
    (["--model.optimizer=SGD", "--model.optimizer.lr=0.1", "--model.optimizer.momentum=-1"],
     "model.optimizer.momentum=-1.0"),
    (["--model.optimizer=SGD", "--model.optimizer.lr=0.1", "--model.optimizer.momentum=1.5"],
     "model.optimizer.momentum=1.5"),
    (["--model.optimizer=SGD", "--model.optimizer.lr=0.1", "--model.optimizer.nesterov=true"],
     "model.optimizer.nesterov=True"),
    (["--model.optimizer=RMSprop", "--model.optimizer.alpha=2"], "model.optimizer.alpha=2.0"),
    (["--model.optimizer=Adagrad", "--model.optimizer.lr_decay=-1"], "model.optimizer.lr_decay=-1.0"),
    (["--model.optimizer.weight_decay=-1"], "model.optimizer.weight_decay=-1.0"),
    # the schedulers
    (["--model.scheduler.T_max=0"], "model.scheduler.T_max=0"),
    (["--model.scheduler.T_max=-5"], "model.scheduler.T_max=-5"),
    (["--model.scheduler.eta_min=-1"], "model.scheduler.eta_min=-1.0"),
    (["--model.scheduler=StepLR"], "model.scheduler.step_size=null"),
    (["--model.scheduler=StepLR", "--model.scheduler.step_size=0"], "model.scheduler.step_size=0"),
    (["--model.scheduler=StepLR", "--model.scheduler.step_size=abc"], "model.scheduler.step_size=abc"),
    ([*STEP, "--model.scheduler.gamma=-0.5"], "model.scheduler.gamma=-0.5"),
    (["--model.scheduler=ExponentialLR", "--model.scheduler.gamma=-1"], "model.scheduler.gamma=-1.0"),
    (["--model.scheduler=ExponentialLR", "--model.scheduler.gamma=.inf"], "model.scheduler.gamma=inf"),
    (["--model.scheduler=MultiStepLR", "--model.scheduler.milestones=[]"], "model.scheduler.milestones=[]"),
    (["--model.scheduler=MultiStepLR", "--model.scheduler.milestones=[0, 3]"], "model.scheduler.milestones=[0, 3]"),
    ([*ONE_CYCLE, "--model.scheduler.total_steps=1"], "model.scheduler.total_steps=1"),
    ([*ONE_CYCLE, "--model.scheduler.total_steps=5"], "model.scheduler=OneCycleLR"),
    (["--model.scheduler=OneCycleLR", "--model.scheduler.max_lr=-1"], "model.scheduler.max_lr=-1.0"),
    ([*ONE_CYCLE, "--model.scheduler.pct_start=1.5"], "model.scheduler.pct_start=1.5"),
    ([*ONE_CYCLE, "--model.scheduler.div_factor=0"], "model.scheduler.div_factor=0.0"),
    ([*ONE_CYCLE, "--model.warmup_steps=10"], "model.warmup_steps=10"),
    (["--model.scheduler=CosineAnnealingWarmRestarts", "--model.scheduler.T_0=0"], "model.scheduler.T_0=0"),
    (["--model.scheduler=CyclicLR", "--model.scheduler.base_lr=-0.1", "--model.scheduler.max_lr=0.1"],
     "model.scheduler.base_lr=-0.1"),
    (["--model.scheduler=LinearLR", "--model.scheduler.start_factor=0"], "model.scheduler.start_factor=0.0"),
    (["--model.scheduler=PolynomialLR", "--model.scheduler.power=-1"], "model.scheduler.power=-1.0"),
    ([PLATEAU, "--model.scheduler.factor=2"], "model.scheduler.factor=2.0"),
    ([PLATEAU, "--model.scheduler.patience=-1"], "model.scheduler.patience=-1"),
    (["--model.scheduler=ReduceLROnPlateau"], "model.scheduler=ReduceLROnPlateau"),
    (["--trainer.max_epochs=-1"], "trainer.max_epochs=-1"),
    # the trainer
    (["--trainer.max_epochs=ten"], "trainer.max_epochs=ten"),
    (["--trainer.max_epochs=-5"], "trainer.max_epochs=-5"),
    (["--trainer.max_steps=-2"], "trainer.max_steps=-2"),
    (["--trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0"),
    (["--trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0"),
    (["--trainer.val_check_interval=1000"], "trainer.val_check_interval=1000"),
    (["--trainer.val_check_interval=1.5"], "trainer.val_check_interval=1.5"),
    (["--trainer.val_check_interval=0"], "trainer.val_check_interval=0"),
    (["--trainer.log_every_n_steps=-1"], "trainer.log_every_n_steps=-1"),
    (["--trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0"),
    (["--trainer.gradient_clip_val=.nan"], "trainer.gradient_clip_val=nan"),
    (["--trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    (["--trainer.limit_train_batches=0"], "trainer.limit_train_batches=0"),
    (["--trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5"),
    (["--trainer.limit_val_batches=-1"], "trainer.limit_val_batches=-1"),
    (["--trainer.limit_val_batches=0"], "early_stopping.monitor=val/loss"),
    (["--trainer.num_sanity_val_steps=-2"], "trainer.num_sanity_val_steps=-2"),
    (["--trainer.precision=17"], "trainer.precision=17"),
    (["--trainer.devices=0"], "trainer.devices=0"),
    (["--trainer.devices=[]"], "trainer.devices=[]"),
    (["--trainer.devices=-3"], "trainer.devices=-3"),
    (["--trainer.accelerator=tpu"], "trainer.strategy=auto"),
    (["--trainer.num_nodes=0"], "trainer.num_nodes=0"),
    (["--trainer.fast_dev_run=-1"], "trainer.fast_dev_run=-1"),
    (["--trainer.accelerator=gpu"], "trainer.accelerator=gpu; allowed: auto or cpu: torch finds no CUDA GPU"),
    (["--trainer.strategy=nonsense"], "trainer.strategy=nonsense; allowed: auto, ddp"),
    (["--trainer.max_time=abc"], "trainer.max_time=abc; allowed: DD:HH:MM:SS"),
    (["--trainer.sync_batchnorm=true", "--trainer.accelerator=cpu"], "trainer.sync_batchnorm=True needs GPUs"),
    (["--ckpt_path="], "ckpt_path='' is empty"),
    (["--model.optimizer.lr=0"], "model.optimizer.lr=0.0; allowed: a finite number > 0"),
    (["--data.num_workers=100000"], "data.num_workers=100000; allowed: 0 to"),
    (["--data.dataset=fake", "--data.fake_shape=[3,100000,100000]"], "data.fake_shape=[3, 100000, 100000] with"),
    (["--trainer.logger.init_args.save_dir=setup.cfg/logs"], "trainer.logger.save_dir=setup.cfg/logs cannot hold"),
    # seeds
    (["--seed_everything=99999999999"], "seed_everything=99999999999"),
    (["--seed_everything=-1"], "seed_everything=-1"),
    (["--seed_everything=abc"], "seed_everything=abc"),
    (["--data.seed=-3"], "data.seed=-3"),
    (["--data.seed=5000000000"], "data.seed=5000000000"),
    # early stopping and checkpoints
    (["--early_stopping.monitor=val/nonexistent"], "early_stopping.monitor=val/nonexistent"),
    (["--early_stopping.monitor=val/los"], "early_stopping.monitor=val/los"),
    (["--early_stopping.monitor=train/acc_clean", "--data.clean_train_size=0"], "early_stopping.monitor=train/acc_clean"),
    (["--early_stopping.monitor=train/penalty"], "early_stopping.monitor=train/penalty"),
    (["--early_stopping.mode=up"], "early_stopping.mode=up"),
    (["--early_stopping.patience=-1"], "early_stopping.patience=-1"),
    (["--early_stopping.patience=soon"], "early_stopping.patience=soon"),
    (["--early_stopping.min_delta=.nan"], "early_stopping.min_delta=nan"),
    (["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor=val/accuracy"],
     f"trainer.callbacks[{NEXT}].monitor=val/accuracy"),
    (["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor=val/acc",
      "--trainer.callbacks.save_top_k=-2"], f"trainer.callbacks[{NEXT}].save_top_k=-2"),
    (["--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=loss"], f"trainer.callbacks[{NEXT}].monitor=loss"),
    (["--trainer.callbacks+=Histograms", "--trainer.callbacks.every_n_epochs=-1"], "Histograms.every_n_epochs=-1"),
    (["--trainer.callbacks+=StochasticWeightAveraging", "--trainer.callbacks.swa_lrs=0.01"],
     f"trainer.callbacks[{NEXT}]=StochasticWeightAveraging"),
    (["--trainer.callbacks+=EMAWeightAveraging"], f"trainer.callbacks[{NEXT}]=EMAWeightAveraging"),
    # the penalty
    (["--penalty.l1=-0.5"], "penalty.l1=-0.5"),
    (["--penalty.l2=abc"], "penalty.l2=abc"),
    (["--penalty.l2=.inf"], "penalty.l2=inf"),
    (["--penalty.l1_mode=lasso"], "penalty.l1_mode=lasso"),
    # the data
    (["--data.dataset=imagenet"], "data.dataset=imagenet"),
    (["--data.val_fraction=0"], "data.val_fraction=0.0"),
    (["--data.test_fraction=1"], "data.test_fraction=1.0"),
    (["--data.val_fraction=0.5", "--data.test_fraction=0.5"], "data.test_fraction=0.5"),
    (["--data.batch_size=zero"], "data.batch_size=zero"),
    (["--data.batch_size=0"], "data.batch_size=0"),
    (["--data.batch_size=1"], "data.batch_size=1"),
    (["--data.eval_batch_size=0"], "data.eval_batch_size=0"),
    (["--data.num_workers=-1"], "data.num_workers=-1"),
    (["--data.normalize=zscore"], "data.normalize=zscore"),
    (["--data.fake_shape=[1,2]"], "data.fake_shape=[1, 2]"),
    (["--data.train_size=1"], "data.train_size=1"),
    (["--data.train_size=5000"], "data.train_size=5000"),
    (["--data.clean_train_size=-1"], "data.clean_train_size=-1"),
    (["--data.data_dir=setup.cfg", "--data.dataset=mnist"], "data.data_dir=setup.cfg"),
    (["--data.predict_split=everything"], "data.predict_split=everything"),
    (["--test_ckpt=middle"], "test_ckpt=middle"),
    # the augmentation
    (["--data.augment=[mixup]"], "data.augment.name=mixup"),
    (["--data.augment=abc"], "data.augment=abc"),
    ([aug("{name: rotation, angle: 3}")], "data.augment.rotation.angle=3"),
    ([aug("{name: rotation, degrees: -5}")], "data.augment.rotation.degrees=-5"),
    ([aug("{name: rotation, degrees: abc}")], "data.augment.rotation.degrees=abc"),
    ([aug("{name: rotation, degrees: .nan}")], "data.augment.rotation.degrees=nan"),
    ([aug("{name: rotation, degrees: .inf}")], "data.augment.rotation.degrees=inf"),
    ([aug("{name: affine, translate: [0.1]}")], "data.augment.affine.translate=[0.1]"),
    ([aug("{name: affine, translate: [0.1, 2]}")], "data.augment.affine.translate=[0.1, 2]"),
    ([aug("{name: affine, scale: [1.2, 0.8]}")], "data.augment.affine.scale=[1.2, 0.8]"),
    ([aug("{name: affine, shear: -3}")], "data.augment.affine.shear=-3"),
    ([aug("{name: random_crop, padding: 1.5}")], "data.augment.random_crop.padding=1.5"),
    ([aug("{name: random_crop, padding: -1}")], "data.augment.random_crop.padding=-1"),
    ([aug("{name: random_crop, padding: 1000000}")], "data.augment.random_crop.padding=1000000"),
    ([aug("{name: hflip, p: 2}")], "data.augment.hflip.p=2"),
    ([aug("{name: vflip, p: true}")], "data.augment.vflip.p=True"),
    ([aug("{name: erasing, ratio: [0, 1]}")], "data.augment.erasing.ratio=[0, 1]"),
    ([aug("{name: erasing, scale: [0.5, 2]}")], "data.augment.erasing.scale=[0.5, 2]"),
    ([aug("{name: erasing, value: .nan}")], "data.augment.erasing.value=nan"),
    ([aug("{name: random_resized_crop, scale: [0, 1]}")], "data.augment.random_resized_crop.scale=[0, 1]"),
    ([aug("{name: jitter, brightness: -1}")], "data.augment.jitter.brightness=-1"),
    ([aug("{name: noise, std: .inf}")], "data.augment.noise.std=inf"),
    ([aug("{padding: 2}")], "data.augment={'padding': 2}"),
]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


# The one phrasing: `error: <setting>=<value> <why>; allowed: <what>` (why may be empty).
ONE_LINE = re.compile(r"^error: [\w.\[\]/-]+=\S.*; allowed: \S.*$")


def assert_one_line(code: int, out: str, err: str, named: str, expected_code: int = 2, says: str = "") -> str:
    """Exit code, nothing on stdout, and on stderr exactly one line in the one phrasing that starts
    with the setting and its value (and says what is wrong)."""
    assert code == expected_code, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {named}"), lines[0]
    assert ONE_LINE.match(lines[0]), lines[0]
    assert says in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("flags,named", CASES, ids=[" ".join(flags)[:60] for flags, _ in CASES])
def test_bad_setting(tmp_path, monkeypatch, capsys, flags, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "setup.cfg").write_text("a file, not a folder")
    line = assert_one_line(*run_cli(["fit", *QUICK, *flags], capsys), named)
    assert "allowed" in line or "choose one of" in line or "must be" in line, line
    assert not (tmp_path / "logs").exists()


FILE_CASES = [
    # file, its content, the setting=value the line starts with, what it says
    ("empty.yaml", "", "--config=empty.yaml", "is empty"),
    ("list.yaml", "- trainer\n- model\n", "--config=list.yaml", "holds a YAML list"),
    ("broken.yaml", "trainer: {max_epochs: 3\n", "--config=broken.yaml", "cannot be read"),
    ("scalar.yaml", "5\n", "--config=scalar.yaml", "holds a YAML int"),
    ("missing.yaml", None, "--config=missing.yaml", "is not a file"),
    ("unknown.yaml", "trainer: {max_epoch: 3}\n", "trainer.max_epoch=", "is not a setting"),
    ("typo.yaml", "modle: {net: MLP}\n", "modle.net=", "is not a setting"),
    ("nested_typo.yaml", "model: {net: {init_args: {dropuot: 0.1}}}\n", "model.net.dropuot=",
     "is not a setting of ConvNet (did you mean dropout?)"),
    ("value.yaml", "model: {net: {init_args: {dropout: 3}}}\n", "model.net.dropout=3", ""),
    ("data_int.yaml", "data: 5\n", "data=5 in data_int.yaml is a YAML int", "a mapping of its settings"),
    ("model_list.yaml", "model: [1, 2]\n", "model=[1, 2] in model_list.yaml is a YAML list", ""),
    # a class written in a file: the line quotes it, not "?" (jsonargparse's message drops it)
    ("no_class.yaml", "model: {net: {class_path: project.model.nn.Nope}}\n", "model.net=project.model.nn.Nope is not valid",
     "project.model.nn has no Nope"),
    ("no_module.yaml", "model: {net: {class_path: my_pkg.nets.Net}}\n", "model.net=my_pkg.nets.Net is not valid",
     "importing my_pkg.nets failed"),
    ("no_optimizer.yaml", "model: {optimizer: {class_path: torch.optim.Adamm}}\n",
     "model.optimizer=torch.optim.Adamm", ""),
]


@pytest.mark.parametrize("name,content,named,says", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_config_file(tmp_path, monkeypatch, capsys, name, content, named, says):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / name).write_text(content)
    assert_one_line(*run_cli(["fit", *QUICK, "--config", name], capsys), named, says=says)
    assert not (tmp_path / "logs").exists()


def _packed(raw):
    for path in raw.glob("*-ubyte"):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()


def _labels(raw, name, labels):
    write_idx(raw / name, np.asarray(labels, dtype=np.uint8))


MNIST_FAULTS = {
    # what a fault does to the files, and what the line must say
    "more labels than images": (lambda raw: _labels(raw, "train-labels-idx1-ubyte", np.arange(400) % 10),
                                "400 labels for the 300 images"),
    "fewer labels than images": (lambda raw: _labels(raw, "train-labels-idx1-ubyte", np.arange(250) % 10),
                                 "250 labels for the 300 images"),
    "fewer test labels": (lambda raw: _labels(raw, "t10k-labels-idx1-ubyte", np.arange(50) % 10),
                          "50 labels for the 60 images"),
    "label out of range": (lambda raw: _labels(raw, "train-labels-idx1-ubyte", [12] + [1] * 299), "label 12"),
    "bad magic": (lambda raw: (raw / "train-images-idx3-ubyte").write_bytes(
        b"\x00\x00\x09\x03" + (raw / "train-images-idx3-ubyte").read_bytes()[4:]), "magic number 2307"),
    "labels as images": (lambda raw: (raw / "t10k-images-idx3-ubyte").write_bytes(
        (raw / "t10k-labels-idx1-ubyte").read_bytes()), "magic number 2049"),
    "truncated images": (lambda raw: (raw / "train-images-idx3-ubyte").write_bytes(
        (raw / "train-images-idx3-ubyte").read_bytes()[:5000]), "truncated"),
    "empty file": (lambda raw: (raw / "train-labels-idx1-ubyte").write_bytes(b""), "shorter than an IDX"),
    "only gz": (_packed, "gunzip -k"),
    "wrong image size": (lambda raw: write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((60, 32, 32))), "32x32"),
}


@pytest.mark.parametrize("fault", MNIST_FAULTS)
def test_bad_data_files_name_the_file(tmp_path, monkeypatch, capsys, fault):
    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data")
    raw = tmp_path / "data" / "MNIST" / "raw"
    damage, named = MNIST_FAULTS[fault]
    damage(raw)
    assert_one_line(*run_cli(["fit", "--data.dataset=mnist", "--data.download=false", *QUICK], capsys),
                    "data.data_dir=data/MNIST/raw holds ", says=named)  # the folder and the file are named
    assert not (tmp_path / "logs").exists()


def test_a_missing_data_set_is_one_line_and_no_log_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_one_line(*run_cli(["fit", "--data.dataset=cifar10", "--data.download=false", *QUICK], capsys),
                    "data.data_dir=data has no CIFAR10", says="--data.dataset=digits")
    assert not (tmp_path / "logs").exists()


def test_the_nan_guard_is_one_line_with_exit_code_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["fit", "--model.optimizer=SGD", "--model.optimizer.lr=1e30", "--model.net.norm=none",
                              "--model.scheduler=null", "--trainer.max_epochs=3", "--test_after_fit=false",
                              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"], capsys)
    assert_one_line(code, "", err, "train/loss=nan at step", expected_code=1, says="allowed: a finite loss")


# --- legitimate settings next to the bad ones: they train ----------------------------------------

def _fit(args: list[str]):
    from project.run.cli import ProjectCLI

    return ProjectCLI(args=["fit", *args, "--trainer.enable_progress_bar=false",
                            "--trainer.enable_model_summary=false"])


def test_no_logger_trains_tests_and_writes_no_logs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = _fit(["--trainer.max_epochs=2", "--trainer.logger=false"])
    assert cli.trainer.current_epoch == 2 and "test/acc" in cli.trainer.callback_metrics
    assert not (tmp_path / "logs").exists() and not (tmp_path / "summary.json").exists()
    assert "Run summary" in capsys.readouterr().out


def test_checkpointing_off_trains_and_tests_the_last_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = _fit(["--trainer.max_epochs=2", "--trainer.enable_checkpointing=false"])
    assert cli.trainer.checkpoint_callbacks == [] and "test/acc" in cli.trainer.callback_metrics
    assert not list(tmp_path.rglob("*.ckpt"))
    assert "tested weights      last weights, after epoch 2" in capsys.readouterr().out


@pytest.mark.parametrize("train_size", [65, 193])
def test_a_last_batch_of_one_sample_with_batch_norm_does_not_crash(tmp_path, monkeypatch, train_size):
    monkeypatch.chdir(tmp_path)
    cli = _fit([f"--data.train_size={train_size}", "--trainer.max_epochs=2", "--test_after_fit=false"])
    batches = train_size // 64
    assert cli.trainer.num_training_batches == batches == cli.datamodule.train_batches()
    # the one sample left over is a different one each epoch: none is dropped for good
    loader = cli.datamodule.train_dataloader()
    seen = [set(), set()]
    for epoch in range(2):
        for images, labels in loader:
            assert len(labels) == 64
            seen[epoch] |= {bytes(image.numpy()) for image in images}
    assert len(seen[0] | seen[1]) > len(seen[0])


def test_an_unlimited_run_with_a_schedule_that_needs_no_length(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = _fit(["--trainer.max_epochs=-1", "--trainer.max_steps=30", "--model.scheduler=StepLR",
                "--model.scheduler.step_size=1", "--test_after_fit=false"])
    assert cli.trainer.global_step == 30 and cli.trainer.num_training_batches == 20
    assert math.isclose(cli.trainer.optimizers[0].param_groups[0]["lr"], 0.003 * 0.1)  # one epoch (20 steps) ended
