import csv
import json
import os
import shutil
import signal
import threading
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import project.lab.compare as lab
import project.lab.runs as compare_run
from project.lab import experiments as experiment_names
from project.lab.configs import check_configs
from project.lab.stats import METRICS
from tests.test_bad_inputs import assert_one_line

TINY = ["--trainer.max_epochs=2", "--data.train_size=100", "--model.net.init_args.widths=[8,16]",
        "--model.net.init_args.hidden=16", "--data.dataset=digits"]  # 8x8 digits: read in a blink


@pytest.fixture
def experiments(tmp_path, monkeypatch):
    folder = tmp_path / "experiments"
    folder.mkdir()
    for name in ("baseline", "dropout"):
        shutil.copy(experiment_names.EXPERIMENT_DIR / f"{name}.yaml", folder)
    (folder / "explode.yaml").write_text(
        "# explode: a learning rate so high that the loss becomes NaN\n"
        "model:\n  optimizer:\n    class_path: torch.optim.SGD\n    init_args:\n      lr: 1.0e+30\n")
    monkeypatch.setattr(experiment_names, "EXPERIMENT_DIR", folder)
    return folder


def _logged(run_dir, tag):
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_compare_writes_tables_and_report_and_caches_by_configuration(tmp_path, experiments):
    lines = []
    rows, results = lab.compare(["baseline", "dropout"], [0, 1], name="tiny", output=str(tmp_path / "out"),
                                extra=TINY, echo=lines.append)
    out = tmp_path / "out" / "tiny"
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["experiment"] for r in table] == ["baseline", "dropout"]
    for metric in METRICS:
        assert {f"{metric}_mean", f"{metric}_std", f"{metric}_ci95"} <= set(table[0])
    # the table's numbers are the runs' own logged numbers (baseline tests its last weights)
    t = 12.706  # Student's t, 97.5% quantile, 1 degree of freedom
    for row in table:
        test_acc, clean = [], []
        for seed in (0, 1):
            run = out / "runs" / row["experiment"] / f"seed_{seed}"
            test_acc.append(_logged(run, "test/acc")[-1])
            clean.append(_logged(run, "train/acc_clean")[-1])
        assert float(row["test_acc_mean"]) == pytest.approx(sum(test_acc) / 2, abs=1e-6)
        std = abs(test_acc[0] - test_acc[1]) / 2 ** 0.5
        assert float(row["test_acc_std"]) == pytest.approx(std, abs=1e-6)
        assert float(row["test_acc_ci95"]) == pytest.approx(t * std / 2 ** 0.5, rel=1e-3, abs=1e-9)
        if row["experiment"] == "baseline":
            assert float(row["train_acc_mean"]) == pytest.approx(sum(clean) / 2, abs=1e-6)
        assert row["runs_ok"] == "2"
    assert "| baseline |" in (out / "results.md").read_text()
    assert (out / "report.png").stat().st_size > 20_000
    assert rows[0]["experiment"] == "baseline" and len(results) == 4

    # unchanged configuration: nothing runs again
    lines.clear()
    lab.compare(["baseline", "dropout"], [0, 1], name="tiny", output=str(tmp_path / "out"), extra=TINY, echo=lines.append)
    assert "4 done before with the same configuration, 0 to run" in lines[0]
    # a deleted result runs again, alone
    (out / "runs" / "dropout" / "seed_1" / "result.json").unlink()
    lines.clear()
    lab.compare(["baseline", "dropout"], [0, 1], name="tiny", output=str(tmp_path / "out"), extra=TINY, echo=lines.append)
    assert "3 done before" in lines[0] and any(line.startswith("[  1/1] dropout seed 1:") for line in lines)
    # a changed flag or config file re-runs what it changes
    lines.clear()
    lab.compare(["baseline"], [0], name="tiny", output=str(tmp_path / "out"), extra=[*TINY, "--trainer.max_epochs=3"],
                echo=lines.append)
    assert "0 done before" in lines[0]
    assert len(_logged(out / "runs" / "baseline" / "seed_0", "val/acc")) == 1  # 3 epochs, a validation every 3
    assert json.loads((out / "runs" / "baseline" / "seed_0" / "result.json").read_text())["val_every"] == 3
    (experiments / "dropout.yaml").write_text((experiments / "dropout.yaml").read_text().replace("0.5", "0.4"))
    lines.clear()
    lab.compare(["dropout"], [0], name="tiny", output=str(tmp_path / "out"), extra=TINY, echo=lines.append)
    assert "0 done before" in lines[0]


def test_a_data_seed_changes_the_training_subset_and_the_augmentation():
    from project.data.datamodule import ImageDataModule

    subsets, augmented, plain = [], [], []
    for seed in (0, 1, 0):
        dm = ImageDataModule(dataset="mnist5k", train_size=100, seed=seed, augment=["hflip"])
        dm.setup()
        subsets.append(dm.train_set.images)
        batch = dm.train_set.images[:64]  # the same images through each seed's augmentation stream
        augmented.append(dm.prepare(batch, augment=True))
        plain.append(dm.prepare(batch))
    assert not torch.equal(subsets[0], subsets[1]) and torch.equal(subsets[0], subsets[2])
    flipped = [torch.isclose(a, p.flip(-1), atol=1e-4).flatten(1).all(1) for a, p in zip(augmented, plain)]
    assert 10 < int(flipped[0].sum()) < 54  # about half of them flipped ...
    assert not torch.equal(flipped[0], flipped[1])  # ... other images for another seed ...
    assert torch.equal(flipped[0], flipped[2])  # ... and the same ones for the same seed


def test_a_failed_run_is_reported_the_rest_still_run_and_the_study_fails(tmp_path, experiments, capsys):
    rows, _ = lab.compare(["explode", "baseline"], [0], name="nan", output=str(tmp_path / "out"), extra=TINY,
                          echo=lambda line: None)
    assert rows[0]["runs_failed"] == 1 and "NonFiniteLossError" in rows[0]["failure"]
    assert rows[1]["runs_ok"] == 1
    assert "failed: NonFiniteLossError" in (tmp_path / "out" / "nan" / "results.md").read_text()
    with pytest.raises(SystemExit) as done:  # the same study again, from the command line
        lab.main(["--experiments", "explode,baseline", "--seeds", "0", "--name", "nan", "--jobs", "1",
                  "--output", str(tmp_path / "out"), "--", *TINY])
    assert done.value.code == 1 and "1 of 2 runs failed" in capsys.readouterr().err


def test_sigterm_stops_the_study_and_records_the_run_as_interrupted(tmp_path, experiments):
    started = tmp_path / "out" / "stop" / "runs" / "baseline" / "seed_0" / "hparams.yaml"  # written as fit starts

    def stop_once_training():  # the signal arrives inside the first run's fit, not before the study began
        deadline = time.time() + 120
        while not started.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_once_training, daemon=True).start()
    with pytest.raises(lab.StudyInterrupted, match="stopped by signal 15"):
        lab.compare(["baseline", "dropout"], [0], name="stop", output=str(tmp_path / "out"),
                    extra=[*TINY, "--trainer.max_epochs=300"], echo=lambda line: None)
    runs = tmp_path / "out" / "stop" / "runs"
    result = json.loads((runs / "baseline" / "seed_0" / "result.json").read_text())
    assert result["status"] == "interrupted"
    assert not (runs / "dropout").exists()  # the next run did not start
    # a study's run that tests its last weights writes no checkpoint: a stopped one is rerun from its start
    assert not (runs / "baseline" / "seed_0" / "checkpoints").exists()
    assert signal.getsignal(signal.SIGTERM) is not compare_run.on_signal  # handlers restored
    compare_run.stop_signal = None


@pytest.mark.slow  # an end-to-end run of several processes; make test-all
def test_runs_in_parallel_processes(tmp_path, experiments):
    lines = []
    rows, results = lab.compare(["baseline", "dropout"], [0], name="jobs", output=str(tmp_path / "out"), extra=TINY,
                                jobs=2, echo=lines.append)
    assert [r["runs_ok"] for r in rows] == [1, 1]
    assert "2 to run, 2 at a time" in lines[0]


def test_unknown_experiment_lists_the_available_ones(tmp_path, experiments):
    with pytest.raises(ValueError, match=r"--experiments=nope is not an experiment; allowed: a name of configs/experiment/ "
                       r"\(baseline, dropout, explode\), a setting=value of the baseline, a config file"):
        lab.compare(["nope"], [0], output=str(tmp_path))
    assert not (tmp_path / "default").exists()


def test_bad_config_in_an_experiment_stops_before_any_run(tmp_path, experiments):
    (experiments / "typo.yaml").write_text("model:\n  net:\n    init_args:\n      norm: batchh\n")
    with pytest.raises(ValueError, match=r"model.net.norm=batchh is not known \(did you mean batch\?\) in experiment typo; "
                       "allowed: batch, "):
        lab.compare(["baseline", "typo"], [0], output=str(tmp_path / "out"), extra=TINY)
    assert not (tmp_path / "out").exists()


def test_every_shipped_experiment_parses():
    assert {"baseline", "l1", "l2", "weight_decay", "dropout", "batchnorm", "layernorm", "groupnorm",
            "instancenorm", "augment", "early_stopping", "label_smoothing", "all", "init_zeros", "init_orthogonal",
            "opt_sgd", "opt_momentum", "opt_adagrad", "opt_rmsprop", "opt_adam", "sched_step", "sched_cosine",
            "sched_onecycle", "sched_plateau", "mnist_mlp_sgd", "mnist_mlp_adam",
            "mnist_mlp_large", "opt_nesterov"} <= set(experiment_names.available())
    check_configs(experiment_names.available(), [], "both", read_data=False)  # mnist_mlp_* need MNIST's files
    for path in experiment_names.EXPERIMENT_DIR.glob("*.yaml"):
        assert path.read_text().startswith(f"# {path.stem}: "), path  # one comment: what it demonstrates


@pytest.mark.slow  # an end-to-end run of several processes; make test-all
def test_compare_with_a_multi_process_trainer_config(tmp_path, experiments):
    ddp = str(experiment_names.CONFIG_DIR / "trainer" / "ddp_cpu.yaml")
    rows, _ = lab.compare(["baseline"], [0], name="ddp", trainer_config=ddp, output=str(tmp_path / "out"),
                          extra=TINY, echo=lambda line: None)
    assert rows[0]["runs_ok"] == 1, rows[0]["failure"]
    log = (tmp_path / "out" / "ddp" / "runs" / "baseline" / "seed_0" / "stdout.txt").read_text()
    assert "Starting with 2 processes" in log


# --- bad input: one line, exit code 2, no folder ----------------------------------------------------

COMPARE_BAD = [
    # flags, the setting=value the line starts with
    (["--experiments", ""], "--experiments="),
    (["--experiments", "nope"], "--experiments=nope is not an experiment"),
    (["--experiments", "baseline,nope"], "--experiments=nope"),
    (["--seeds", "a"], "--seeds=a"),
    (["--seeds", "-1"], "--seeds=-1"),
    (["--seeds", "99999999999"], "--seeds=99999999999"),
    (["--seeds", "0,0"], "--seeds=0,0 repeats a seed"),
    (["--seeds", ","], "--seeds="),
    (["--vary", "all"], "--vary=all is not known"),
    (["--jobs", "abc"], "--jobs=abc"),
    (["--jobs", "0"], "--jobs=0"),
    (["--jobs", "-2"], "--jobs=-2"),
    (["--name", "../../escape"], "--name=../../escape"),
    (["--name", "a/b"], "--name=a/b"),
    (["--name", ""], "--name="),
    (["--name", "x" * 10_000], "--name=xxxx"),
    (["--name", ".."], "--name=.."),
    (["--output", "a_file/below"], "--output=a_file/below lies under a_file, which is a file"),
    (["--trainer-config", "missing.yaml"], "--trainer-config=missing.yaml is not a file"),
    (["--dataset", "imagenet"], "data.dataset=imagenet is not known"),
    (["--bogus", "1"], "--bogus=? is not a flag"),
    (["--", "--data.batch_size=0"], "data.batch_size=0 in experiment baseline"),
    (["--", "--model.net.norm=weight"], "model.net.norm=weight is not known"),
    (["--", "--data.train_size=100000"], "data.train_size=100000 is larger than the training split"),
    (["--", "--trainer.max_epochs=ten"], "trainer.max_epochs=ten is not valid"),
    (["--", "--nonsense=1"], "nonsense=1 is not a setting"),
    (["--sweep", "data.train_size"], "--sweep=data.train_size; allowed: <setting>=<value>"),
    (["--sweep", "data.train_size="], "--sweep=data.train_size="),
    (["--sweep", "=1,2"], "--sweep==1,2"),
    (["--sweep", "data.train_size=100,100"], "--sweep=data.train_size=100,100 repeats a value"),
    (["--sweep", "data.train_size=100,abc"], "data.train_size=abc"),
    (["--sweep", "data.nonsense=1,2"], "data.nonsense=1"),
    (["--sweep", "model.net.init_args.width=0,1"], "model.net.width=0"),
    (["--experiments", "baseline", "--sweep", "data.train_size=100,200"], "--experiments=baseline cannot go with --sweep"),
    (["--seeds", "4294967295", "--replicate"], "--seeds=4294967295"),
    (["--experiments", "l2", "--until-decided", "--max-seeds", "2"], "--max-seeds=2"),
    (["--experiments", "l2", "--until-decided", "--margin", "0"], "--margin=0.0"),
    (["--experiments", "l2", "--until-decided", "--round", "0"], "--round=0"),
    (["--experiments", "l2", "--until-decided", "--claims", "nothing.yaml"], "--claims=nothing.yaml"),
    (["--experiments", "l2", "--until-decided", "--claims", "a_file"], "--claims=a_file"),
    (["--experiments", "l2", "--until-decided", "--seeds", "0"], "--seeds=0"),
    (["--experiments", "l2", "--until-decided", "--replicate"], "--until-decided=on"),
    (["--experiments", "label_smoothing", "--until-decided"], "--experiments=label_smoothing"),
]


@pytest.mark.parametrize("flags,named", COMPARE_BAD, ids=[" ".join(f)[:40] for f, _ in COMPARE_BAD])
def test_bad_compare_input_is_one_line_before_any_folder(tmp_path, monkeypatch, capsys, flags, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as done:
        lab.main(flags if flags[:1] == ["--experiments"] else ["--seeds", "0", *flags] if "--sweep" in flags
                 else ["--experiments", "baseline", "--seeds", "0", *flags])
    captured = capsys.readouterr()
    assert_one_line(done.value.code, captured.out, captured.err, named)
    assert not (tmp_path / "logs").exists()


def test_a_sweep_draws_a_learning_curve_and_replicate_runs_disjoint_seeds(tmp_path, experiments):
    lines = []
    rows, results = lab.compare([], [0, 1], name="curve", output=str(tmp_path / "out"), extra=TINY, echo=lines.append,
                                sweep="data.train_size=50,100", replicate=True)
    out = tmp_path / "out" / "curve"
    assert [r["experiment"] for r in rows] == ["data.train_size=50", "data.train_size=100"]
    assert sorted({r["seed"] for r in results}) == [0, 1, 2, 3]  # the replicate set: the next two seeds
    assert (out / "runs" / "data.train_size=50" / "seed_3" / "result.json").exists()
    curve = (out / "curve.md").read_text().splitlines()
    point = next(line for line in curve if line.startswith("| 100 |"))
    runs = [r for r in results if r["experiment"] == "data.train_size=100" and r["seed"] in (0, 1)]
    train = sum(r["train_acc"] for r in runs) / 2
    assert point.split(" | ")[1] == f"{train:.3f}"  # the mean of the first seed set's runs (2 seeds: no interval)
    assert point.split(" | ")[4] == f"{1 - train:+.3f}"  # bias = 1 - clean train accuracy
    assert (out / "curve.png").stat().st_size > 20_000
    assert any(line.startswith("warning: data.train_size=50, 100 ran on fewer than 3 seeds") for line in lines)
    assert not (out / "conclusions.md").exists()  # the lab's verdicts are DECIDE=1's
    assert "Replication on seeds 2, 3:" in (out / "results.md").read_text()
    assert "Replicated: marked on seeds 0,1" in (out / "results.md").read_text()
    # the study's Custom Scalars: one chart per experiment, two lines each, means of the seeds
    seeds = [r for r in results if r["experiment"] == "data.train_size=50"]
    for run, key in (("clean_train", "train_acc_curve"), ("validation", "val_acc_curve")):
        means = EventAccumulator(str(out / "mean_of_seeds" / run))
        means.Reload()
        assert sorted(means.Tags()["scalars"]) == ["data.train_size=100/accuracy", "data.train_size=50/accuracy"]
        assert means.Scalars("data.train_size=50/accuracy")[0].value == pytest.approx(
            sum(r[key][0] for r in seeds) / len(seeds), abs=1e-6)


# Each lab experiment changes only its technique's settings against the baseline (prefixes of the
# resolved configuration's keys); early stopping's technique includes testing the best checkpoint.
TECHNIQUE_KEYS = {"l1": ["penalty.l1"], "l2": ["penalty.l2"],
                  "weight_decay": ["model.optimizer.class_path", "model.optimizer.init_args.weight_decay",
                                   "model.optimizer.init_args.decoupled_weight_decay"],  # AdamW = Adam + this
                  "dropout": ["model.net.init_args.dropout", "model.net.init_args.conv_dropout"],
                  "batchnorm": ["model.net.init_args.norm"], "augment": ["data.init_args.augment"],
                  "early_stopping": ["early_stopping", "test_ckpt"], "label_smoothing": ["model.label_smoothing"]}


def _resolved(capsys, name: str) -> dict:
    import yaml

    from project.run.cli import main

    with pytest.raises(SystemExit):
        main(["fit", *experiment_names.args(name), "--print_config"])
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value
    walk("", yaml.safe_load(capsys.readouterr().out))
    return flat


def test_each_experiment_changes_only_its_technique(capsys):
    baseline = _resolved(capsys, "baseline")
    for name, allowed in TECHNIQUE_KEYS.items():
        config = _resolved(capsys, name)
        changed = sorted(k for k in set(config) | set(baseline) if config.get(k) != baseline.get(k))
        assert changed, f"{name} changes nothing"
        stray = [k for k in changed if not any(k == a or k.startswith(f"{a}.") for a in allowed)]
        assert not stray, f"{name} also changes {stray}"


@pytest.mark.slow  # 17 real runs, 30 s; make test-all (make test keeps tests/lab/test_decide.py's study on fake runs)
def test_until_decided_answers_claims_with_real_runs_and_stops_paying_for_decided_ones(tmp_path, experiments):
    """Two claims on real tiny runs: an L1 penalty makes exact zeros (decided on the first round), dropout's
    test accuracy (undecided: every look); the decided claim's experiment runs no more seeds but the recheck's."""
    claims = tmp_path / "claims.yaml"
    claims.write_text("claims:\n"
                      "  - {claim: L1 zeros, experiment: penalty.l1=0.01, metric: zero_fraction, expect: higher}\n"
                      "  - {claim: dropout, experiment: dropout, metric: test_acc, expect: higher}\n")
    lines = []
    lab.compare(None, [0, 1, 2], name="decide", output=str(tmp_path / "out"),
                extra=[*TINY, "--trainer.max_epochs=1", "--penalty.l1_mode=proximal"],
                echo=lines.append, until_decided=True, claims=str(claims), max_seeds=4, round_size=1, jobs=1)
    out = tmp_path / "out" / "decide"
    document = json.loads((out / "conclusions.json").read_text())
    zeros, dropout = document["claims"]
    assert zeros["verdict"] == "effect" and zeros["look"] == 1 and zeros["estimate"] > 0.1
    assert zeros["recheck"]["seeds"] == [4, 5, 6] and zeros["recheck"]["held"] == "held"
    ran = {(p.parent.name, p.name) for p in (out / "runs").glob("*/seed_*")}
    assert {s for e, s in ran if e == "penalty.l1=0.01"} == {f"seed_{s}" for s in (0, 1, 2, 4, 5, 6)}
    assert dropout["look"] == 2 and dropout["seeds"] == [0, 1, 2, 3] or dropout["verdict"] != "undecided"
    assert document["runs"]["sequential"] == len(ran) and document["command"] == "make compare DECIDE=1"
    page = (out / "conclusions.md").read_text()
    assert "| L1 zeros | penalty.l1=0.01 | zero_fraction | yes: higher by" in page
    assert "look 1: 2 claims undecided, 3 experiments, up to 3 seeds" in lines
    assert any(line.startswith("  look 1 decided penalty.l1=0.01 zero_fraction") for line in lines)
