import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import project.checkpoints as checkpoints
from project.checkpoints import AtomicCheckpointIO, CheckpointError, read_checkpoint, resolve_checkpoint
from project.cli import ProjectCLI, main

QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def final_state(run: Path) -> tuple[dict, dict]:
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    metrics = {k: v for k, v in saved["callbacks"].items() if "ModelCheckpoint" in k}
    return saved["state_dict"], metrics


def cli(*flags: str) -> list[str]:
    return [sys.executable, "-m", "project", "fit", "--trainer.max_epochs=8", "--early_stopping=null",
            "--trainer.deterministic=true", "--test_after_fit=false", "--data.augment=[{name: rotation, degrees: 10}]",
            "--model.net.init_args.dropout=0.3", *QUICK, *flags]


def test_sigterm_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(cli("--trainer.logger.init_args.name=whole"), check=True, env=env, capture_output=True)
    # the interrupted run: SIGTERM as soon as its first checkpoint exists
    run = tmp_path / "logs" / "cut" / "version_0"
    process = subprocess.Popen(cli("--trainer.logger.init_args.name=cut"), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None and time.time() < deadline, process.stdout.read().decode()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    interrupted_at = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert interrupted_at < 7, "the run finished before the signal: nothing was tested"
    assert (run / "checkpoints" / "interrupted.ckpt").exists()
    resumed = subprocess.run(cli("--trainer.logger.init_args.name=cut", "--ckpt_path=last"), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (tmp_path / "logs" / "cut" / "version_1").exists()  # continued in its own folder
    whole_weights, whole_metrics = final_state(tmp_path / "logs" / "whole" / "version_0")
    cut_weights, cut_metrics = final_state(run)
    assert whole_weights.keys() == cut_weights.keys()
    assert all(torch.equal(whole_weights[k], cut_weights[k]) for k in whole_weights)
    assert [m["best_model_score"] for m in whole_metrics.values()] == [m["best_model_score"] for m in cut_metrics.values()]


def test_same_seed_same_metrics():
    runs = [ProjectCLI(args=["fit", "--trainer.max_epochs=2", "--trainer.deterministic=true",
                             f"--trainer.logger.init_args.name=run{i}", *QUICK]) for i in range(2)]
    assert runs[0].fit_metrics == runs[1].fit_metrics
    other = ProjectCLI(args=["fit", "--trainer.max_epochs=2", "--seed_everything=1", *QUICK])
    assert other.fit_metrics["train/loss"] != runs[0].fit_metrics["train/loss"]


def test_a_new_run_never_overwrites_an_earlier_one(tmp_path):
    for _ in range(2):
        ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--test_after_fit=false", *QUICK])
    versions = sorted(p.name for p in (tmp_path / "logs" / "default").iterdir())
    assert versions == ["version_0", "version_1"]
    assert all((tmp_path / "logs" / "default" / v / "checkpoints" / "last.ckpt").exists() for v in versions)


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "cannot be read"),
    (lambda p: p.write_text("hello"), "cannot be read"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "is not a Lightning checkpoint of this project"),
])
def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path, capsys, damage, message):
    ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--test_after_fit=false", *QUICK])
    path = tmp_path / "logs" / "default" / "version_0" / "checkpoints" / "last.ckpt"
    damage(path)
    with pytest.raises(SystemExit) as done:
        main(["fit", "--ckpt_path=last", *QUICK])
    assert done.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "logs" / "default" / "version_1").exists()


def test_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--test_after_fit=false", *QUICK])
    with pytest.raises(SystemExit) as done:
        main(["test", "--ckpt_path=last", "--model.net=MLP", *QUICK])
    assert done.value.code == 2 and "was saved by a different model" in capsys.readouterr().err


def test_checkpoints_load_safely_with_weights_only(tmp_path):
    ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--test_after_fit=false", *QUICK])
    saved = read_checkpoint(tmp_path / "logs" / "default" / "version_0" / "checkpoints" / "last.ckpt")
    assert {"state_dict", "optimizer_states", "loops", "callbacks", "ImageDataModule"} <= set(saved)


def test_resume_without_a_run_says_so(capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", "--ckpt_path=last", *QUICK])
    assert done.value.code == 2
    assert "no run to resume" in capsys.readouterr().err


def test_resolve_points_into_the_newest_run(tmp_path):
    for version in (2, 10):
        folder = tmp_path / "logs" / "x" / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        (folder / "last.ckpt").write_bytes(b"")
    path, run = resolve_checkpoint("last", str(tmp_path / "logs"), "x")
    assert run == "version_10" and path.name == "last.ckpt"
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_checkpoint("nope.ckpt", "logs", "x")


def test_unwritable_logs_fail_before_training(tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the logs folder should be")
    with pytest.raises(SystemExit) as done:
        main(["fit", f"--trainer.logger.init_args.save_dir={blocker}/logs", *QUICK])
    assert done.value.code == 2
    assert f"cannot write logs and checkpoints to {blocker}/logs" in capsys.readouterr().err


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]
