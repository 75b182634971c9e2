import csv
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import project.compare as lab

TINY = ["--trainer.max_epochs=2", "--data.train_size=100", "--model.net.init_args.widths=[8,16]",
        "--model.net.init_args.hidden=16"]


@pytest.fixture
def experiments(tmp_path, monkeypatch):
    folder = tmp_path / "experiments"
    folder.mkdir()
    for name in ("baseline", "dropout"):
        shutil.copy(lab.EXPERIMENT_DIR / f"{name}.yaml", folder)
    (folder / "explode.yaml").write_text(
        "# explode: a learning rate so high that the loss becomes NaN\n"
        "model:\n  optimizer:\n    class_path: torch.optim.SGD\n    init_args:\n      lr: 1.0e+30\n")
    monkeypatch.setattr(lab, "EXPERIMENT_DIR", folder)
    return folder


def test_compare_writes_tables_and_report_and_resumes(tmp_path, experiments):
    lines = []
    rows = lab.compare(["baseline", "dropout"], [0, 1], name="tiny", output=str(tmp_path / "out"), extra=TINY,
                       echo=lines.append)
    out = tmp_path / "out" / "tiny"
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["experiment"] for r in table] == ["baseline", "dropout"]
    for metric in lab.METRICS:
        assert f"{metric}_mean" in table[0] and f"{metric}_std" in table[0]
    # the table's numbers are the runs' own logged numbers
    for row in table:
        logged = []
        for seed in (0, 1):
            events = EventAccumulator(str(out / "runs" / row["experiment"] / f"seed_{seed}"))
            events.Reload()
            logged.append(events.Scalars("test/acc")[-1].value)
        assert float(row["test_acc_mean"]) == pytest.approx(sum(logged) / 2, abs=1e-6)
        assert float(row["test_acc_std"]) == pytest.approx(abs(logged[0] - logged[1]) / 2 ** 0.5, abs=1e-6)
        assert row["runs_ok"] == "2"
    assert "| baseline |" in (out / "results.md").read_text()
    report = out / "report.png"
    assert report.stat().st_size > 20_000
    assert rows[0]["experiment"] == "baseline"
    # a second invocation skips what is done and re-runs what was interrupted
    (out / "runs" / "dropout" / "seed_1" / "result.json").unlink()
    lines.clear()
    lab.compare(["baseline", "dropout"], [0, 1], name="tiny", output=str(tmp_path / "out"), extra=TINY,
                echo=lines.append)
    assert sum("skipped" in line for line in lines) == 3
    assert any(line.startswith("[  4/4] dropout seed 1 ...") for line in lines)


def test_a_failed_run_is_reported_and_the_rest_still_run(tmp_path, experiments):
    rows = lab.compare(["explode", "baseline"], [0], name="nan", output=str(tmp_path / "out"), extra=TINY,
                       echo=lambda line: None)
    assert rows[0]["runs_failed"] == 1 and "NonFiniteLossError" in rows[0]["failure"]
    assert rows[1]["runs_ok"] == 1
    assert "failed: NonFiniteLossError" in (tmp_path / "out" / "nan" / "results.md").read_text()


def test_unknown_experiment_lists_the_available_ones(tmp_path, experiments):
    with pytest.raises(ValueError, match=r"unknown experiment\(s\) \['nope'\]; available: \['baseline', 'dropout'"):
        lab.compare(["nope"], [0], output=str(tmp_path))
    assert not (tmp_path / "default").exists()


def test_bad_config_in_an_experiment_stops_before_any_run(tmp_path, experiments):
    (experiments / "typo.yaml").write_text("model:\n  net:\n    init_args:\n      norm: batchh\n")
    with pytest.raises(ValueError, match="experiment 'typo': error: norm='batchh' is not known"):
        lab.compare(["baseline", "typo"], [0], output=str(tmp_path / "out"), extra=TINY)
    assert not (tmp_path / "out").exists()


def test_every_shipped_experiment_parses():
    assert {"baseline", "l1", "l2", "weight_decay", "dropout", "batchnorm", "layernorm", "groupnorm",
            "instancenorm", "augment", "early_stopping", "label_smoothing", "all", "init_zeros", "init_orthogonal",
            "opt_sgd", "opt_momentum", "opt_adagrad", "opt_rmsprop", "opt_adam", "sched_step", "sched_cosine",
            "sched_onecycle", "sched_plateau", "mnist_mlp_sgd", "mnist_mlp_adam",
            "mnist_mlp_large"} <= set(lab.available_experiments())
    lab.check_configs(lab.available_experiments(), [])
    for path in lab.EXPERIMENT_DIR.glob("*.yaml"):
        assert path.read_text().startswith(f"# {path.stem}: "), path  # one comment: what it demonstrates


def test_compare_with_a_multi_process_trainer_config(tmp_path, experiments):
    ddp = str(lab.CONFIG_DIR / "trainer" / "ddp_cpu.yaml")
    rows = lab.compare(["baseline"], [0], name="ddp", trainer_config=ddp, output=str(tmp_path / "out"),
                       extra=TINY, echo=lambda line: None)
    assert rows[0]["runs_ok"] == 1, rows[0]["failure"]
    log = (tmp_path / "out" / "ddp" / "runs" / "baseline" / "seed_0" / "stdout.txt").read_text()
    assert "Starting with 2 processes" in log
