import csv
import os
import subprocess
import sys

import optuna
import pytest
import yaml

import project.search.study as search
from project.run.cli import ProjectCLI
from tests.test_bad_inputs import assert_one_line

TINY = ["--trainer.max_epochs=2", "--data.train_size=200", "--model.net.init_args.widths=[8,16]",
        "--model.net.init_args.hidden=16", "--early_stopping=null"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write_space(tmp_path, **changes):
    space = {"metric": "val/acc_best", "direction": "maximize", "seed": 0, "pruner": {"type": "none"},
             "params": {"model.optimizer.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                        "model.net.init_args.dropout": {"type": "float", "low": 0.0, "high": 0.3},
                        "data.batch_size": {"type": "categorical", "choices": [32, 64]}}}
    space.update(changes)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def test_three_trials_write_results_and_best_yaml_reproduces_the_best(tmp_path):
    lines = []
    study = search.search(write_space(tmp_path), "tiny", trials=3, extra=TINY, echo=lines.append)
    out = tmp_path / "logs" / "search" / "tiny"
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert {"model.optimizer.init_args.lr", "data.batch_size"} <= set(rows[0])
    assert sum(line.startswith("trial ") for line in lines) == 3 and "| best " in lines[-2]
    for t in study.trials:  # each trial is an ordinary run with its own TensorBoard logs
        assert (out / "trials" / f"trial_{t.number:04d}" / "config.yaml").exists()
        assert 1e-3 <= t.params["model.optimizer.init_args.lr"] <= 1e-2 and t.params["data.batch_size"] in (32, 64)
    assert (out / "search.png").stat().st_size > 10_000
    # project fit --config best.yaml gives the best trial's value again
    cli = ProjectCLI(args=["fit", "--config", str(out / "best.yaml"), "--trainer.logger.init_args.save_dir=again",
                           "--test_after_fit=false", "--trainer.enable_progress_bar=false"])
    assert cli.trainer.callback_metrics["val/acc_best"].item() == pytest.approx(study.best_value, abs=1e-6)


def test_a_killed_search_resumes_where_it_stopped(tmp_path):
    space = write_space(tmp_path)
    first = search.search(space, "resume", trials=2, extra=TINY, echo=lambda line: None)
    params = [t.params for t in first.trials]
    lines = []
    again = search.search(space, "resume", trials=3, extra=TINY, echo=lines.append)
    assert "2 trials done before" in lines[0]
    assert len(again.trials) == 3 and [t.params for t in again.trials[:2]] == params
    assert again.trials[2].params not in params  # the sequence continues; it is not replayed from the seed
    lines.clear()
    search.search(space, "resume", trials=3, extra=TINY, echo=lines.append)  # budget reached: no trial
    assert not any(line.startswith("trial ") for line in lines)


def test_pruning_stops_trials_that_trail(tmp_path):
    # a threshold no run reaches after its first epoch: every trial is pruned there
    space = write_space(tmp_path, pruner={"type": "threshold", "lower": 0.999})
    study = search.search(space, "prune", trials=2, extra=[*TINY, "--trainer.max_epochs=4"], echo=lambda line: None)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert all(len(t.intermediate_values) == 1 for t in study.trials)
    rows = list(csv.DictReader(open(tmp_path / "logs" / "search" / "prune" / "trials.csv")))
    assert [r["state"] for r in rows] == ["PRUNED", "PRUNED"] and rows[0]["epochs_reported"] == "1"


def test_median_pruner_with_real_trials(tmp_path):
    # a rate that learns and one that cannot move the weights: a trial of the second after one of the
    # first trails the median at its first report, so the median pruner must stop it
    space = write_space(tmp_path, pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                        params={"model.optimizer.init_args.lr": {"type": "categorical", "choices": [0.01, 1e-9]}})
    # all 1,257 training digits and no normalization, so a learning rate shows in the first epoch's accuracy
    learns = ["--trainer.max_epochs=2", "--model.net.init_args.widths=[8,16]", "--model.net.init_args.hidden=16",
              "--early_stopping=null", "--model.net.init_args.norm=none"]
    study = search.search(space, "median", trials=5, extra=learns, echo=lambda line: None)
    states = [t.state.name for t in study.trials]
    assert states[0] == "COMPLETE" and len(states) == 5
    slow_after_fast = [t for t in study.trials if t.params["model.optimizer.init_args.lr"] == 1e-9 and any(
        u.params["model.optimizer.init_args.lr"] == 0.01 for u in study.trials[: t.number])]
    assert slow_after_fast and all(t.state.name == "PRUNED" for t in slow_after_fast), states
    for t in study.trials:  # a pruned trial trailed the median of earlier trials at its last report
        if t.state.name == "PRUNED":
            step, value = max(t.intermediate_values.items())
            earlier = [u.intermediate_values[step] for u in study.trials[: t.number] if step in u.intermediate_values]
            assert value < sorted(earlier)[len(earlier) // 2] + 1e-9


@pytest.mark.slow  # an end-to-end run of several processes; make test-all
def test_two_processes_share_one_sqlite_study(tmp_path):
    space = write_space(tmp_path)
    command = [sys.executable, "-m", "project.search", "--space", str(space), "--name", "shared", "--trials", "4",
               "--", *TINY]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), [o[-3000:] for o in outputs]
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path}/logs/search/shared/study.db")
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 4 <= len(finished) <= 5  # each process checks the budget before starting a trial
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both processes ran trials
    assert len({t.number for t in finished}) == len(finished)


BAD_SPACES = [
    (dict(params={"model.net.init_args.dropot": {"type": "float", "low": 0, "high": 0.5}}), "dropot"),
    (dict(params={"penalty.l2": {"type": "float", "low": 0.1, "high": 0.01}}),
     "params.penalty.l2.low=0.1; allowed: a number <= high (0.01)"),
    (dict(params={"penalty.l2": {"type": "float", "low": 0, "high": 0.01, "log": True}}),
     "params.penalty.l2.low=0; allowed: a number > 0 with log: true"),
    (dict(params={"data.batch_size": {"type": "categorical", "choices": []}}),
     "params.data.batch_size.choices=[]; allowed: a non-empty list"),
    (dict(params={"data.batch_size": {"type": "uniform", "low": 1, "high": 2}}),
     "params.data.batch_size={'high': 2, 'low': 1, 'type': 'uniform'} has no known type"),
    (dict(metric="val/accuracy"), "metric=val/accuracy is not a metric the model logs at each validation; allowed: val/loss"),
    (dict(direction="up"), "direction=up; allowed: maximize, minimize"),
    (dict(params={}), "--space="),
    (dict(pruner={"type": "hyperband"}), "pruner.type=hyperband is not known"),
    (dict(params={"model.net.init_args.norm": {"type": "categorical", "choices": ["weight"]}}),
     "model.net.norm=weight is not known"),
]


@pytest.mark.parametrize("changes,message", BAD_SPACES)
def test_bad_search_spaces_stop_with_one_line_before_any_trial(tmp_path, capsys, changes, message):
    with pytest.raises(SystemExit) as done:
        search.main(["--space", str(write_space(tmp_path, **changes)), "--trials", "1", "--", *TINY])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "logs").exists()


SEARCH_BAD = [
    # changes to the space or flags, the setting=value the line starts with
    ({}, ["--trials", "abc"], "--trials=abc"),
    ({}, ["--trials", "0"], "--trials=0"),
    ({}, ["--trials", "-1"], "--trials=-1"),
    ({}, ["--timeout", "nan"], "--timeout=nan"),
    ({}, ["--timeout", "0"], "--timeout=0"),
    ({}, ["--timeout", "-5"], "--timeout=-5"),
    ({}, ["--timeout", "inf"], "--timeout=inf"),
    ({}, ["--heartbeat", "0"], "--heartbeat=0"),
    ({}, ["--heartbeat", "abc"], "--heartbeat=abc"),
    ({}, ["--storage", "sqlite:////no/such/folder/x.db"], "--storage=sqlite:////no/such/folder/x.db"),
    ({}, ["--name", "../x"], "--name=../x"),
    ({}, ["--name", ""], "--name="),
    ({}, ["--name", "x" * 10_000], "--name=xxxx"),
    ({}, ["--output", "a_file/x"], "--output=a_file/x lies under a_file"),
    ({}, ["--space", "missing.yaml"], "--space=missing.yaml cannot be read"),
    ({}, ["--space", "binary.yaml"], "--space=binary.yaml cannot be read"),
    ({}, ["--bogus=1"], "--bogus=1 is not a flag"),
    ({}, ["--", "--data.eval_batch_size=0"], "data.eval_batch_size=0"),
    # a flag for a searched setting: every trial would override it (it used to be dropped in silence)
    ({}, ["--", "--data.batch_size=0"], "data.batch_size=0 is searched by the space"),
    ({}, ["--", "--model.net.dropout=0.5"], "model.net.dropout=0.5 is searched by the space"),
    (dict(pruner={"type": "threshold"}), [], "pruner={'type': 'threshold'} cannot be built"),
    (dict(pruner={"type": "median", "patience": 3}), [], "pruner.patience=3 is not a setting of the median pruner"),
    (dict(pruner="median"), [], "pruner=median"),
    (dict(seed="abc"), [], "seed=abc"),
    (dict(seed=-1), [], "seed=-1"),
    (dict(params={"penalty.l2": {"type": "float", "low": 0.0, "high": 0.1, "step": 0}}), [],
     "params.penalty.l2.step=0"),
    (dict(params={"penalty.l2": {"type": "float", "low": 0.001, "high": 0.1, "lo": 1}}), [],
     "params.penalty.l2.lo=1 is not a setting of a float parameter"),
    (dict(params={"model.net.init_args.norm": {"type": "categorical", "choices": ["batch", "weight"]}}), [],
     "model.net.norm=weight is not known"),
    (dict(params={"data.batch_size": {"type": "categorical", "choices": [32, "abc"]}}), [], "data.batch_size=abc"),
    (dict(params={"model.net.init_args.dropout": {"type": "float", "low": 0.0, "high": 1.5}}), [],
     "model.net.dropout=1.5"),
    (dict(params={"data.batch_size": {"type": "int", "low": 1.5, "high": 64}}), [], "params.data.batch_size.low=1.5"),
    (dict(params={"data.batch_size": {"type": "categorical", "choices": [[1, 2]]}}), [],
     "params.data.batch_size.choices=[1, 2]"),
    (dict(flags="--trainer.max_epochs=3"), [], "flags=--trainer.max_epochs=3"),
    (dict(config=["nope.yaml"]), [], "--config=nope.yaml is not a file"),  # was config=? ... see --help
    (dict(config=["a_file"]), [], "--config=a_file is empty"),
]


@pytest.mark.parametrize("changes,flags,named", SEARCH_BAD, ids=[f"{c} {' '.join(f)}"[:50] for c, f, _ in SEARCH_BAD])
def test_bad_search_input_is_one_line_before_any_folder(tmp_path, capsys, changes, flags, named):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    space = write_space(tmp_path, **changes)
    args = ["--space", str(space), "--trials", "1", *flags]
    if "--" not in flags:
        args += ["--", *TINY]
    with pytest.raises(SystemExit) as done:
        search.main(args)
    captured = capsys.readouterr()
    assert_one_line(done.value.code, captured.out, captured.err, named)
    assert not (tmp_path / "logs").exists()
