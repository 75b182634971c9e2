"""One run of a study (project/lab/runs.py): a real tiny fit in its own folder, its figures read
back equal to what the run itself wrote, and a failing run reported with its own error line."""

import json

import pytest

from project.lab.runs import run_one
from project.run.report import read_summary

TINY = ["fit", "--config", "configs/default.yaml", "--trainer.max_epochs=2", "--data.train_size=100",
        "--model.net.init_args.widths=[8,16]", "--model.net.init_args.hidden=16"]


def test_a_run_reads_back_its_own_summary(tmp_path, capfd):
    args = [*TINY, f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}", "--trainer.logger.init_args.name=base",
            "--trainer.logger.init_args.version=seed_0"]
    result = run_one("base", 0, "both", args, tmp_path / "runs", key="k", label="base s0")
    assert result["status"] == "ok", result
    run_dir = tmp_path / "runs" / "base" / "seed_0"
    summary = read_summary(run_dir)
    assert result["test_acc"] == pytest.approx(summary["test"]["test/acc"])
    assert result["gap"] == pytest.approx(result["train_acc"] - summary["tested_weights"]["val/acc"], abs=1e-6)
    assert result["epochs"] == 2 == len(result["val_acc_curve"]) and result["best_val_acc"] == max(result["val_acc_curve"])
    assert json.loads((run_dir / "result.json").read_text())["config_key"] == "k"
    assert "base s0  epoch 2/2" in capfd.readouterr().out  # the study's own output: a line per epoch
    assert "Run summary" in (run_dir / "stdout.txt").read_text()  # the run's output: its own file


def test_a_failing_run_is_reported_with_its_own_line(tmp_path):
    result = run_one("bad", 1, "both", [*TINY, "--model.net.init_args.norm=weight"], tmp_path / "runs", key="k")
    assert result["status"] == "failed"
    assert result["reason"] == ("exit 2: error: model.net.norm=weight is not known; allowed: batch, group, instance, "
                                "layer, none")
