import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import project.run.checkpoints as checkpoints
from project.model.classifier import ImageClassifier
from project.run.checkpoints import AtomicCheckpointIO, CheckpointError, read_checkpoint, resolve_checkpoint
from project.run.cli import ProjectCLI, main

QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def final_state(run: Path) -> tuple[dict, dict]:
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    metrics = {k: v for k, v in saved["callbacks"].items() if "ModelCheckpoint" in k}
    return saved["state_dict"], metrics


def cli(*flags: str) -> list[str]:
    # The rate jumps 10x after epoch 5, so val/loss is best at epoch 4 and the last epochs do not
    # improve: last.ckpt (the last finished epoch) and the best checkpoint differ.
    return [sys.executable, "-m", "project", "fit", "--trainer.max_epochs=8", "--early_stopping=null",
            "--trainer.deterministic=true", "--test_after_fit=false", "--data.augment=[{name: rotation, degrees: 10}]",
            "--model.net.init_args.dropout=0.3", "--model.scheduler=StepLR", "--model.scheduler.step_size=5",
            "--model.scheduler.gamma=10", *QUICK, *flags]


def _epoch_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


def test_a_run_cut_after_one_of_two_epochs_resumes_bit_identical(tmp_path, monkeypatch):
    """The default configuration (dropout, augmentation, a cosine schedule over max_epochs), cut
    after its first of two epochs and resumed with --ckpt_path last, ends with the uninterrupted
    run's weights, bit for bit. The cut run has max_epochs=2 too: a run of max_epochs=1 is another
    run (its cosine schedule is one epoch long), which is why an earlier check found a difference."""
    monkeypatch.syspath_prepend(str(REPO / "tests" / "helpers"))
    flags = ["fit", "--trainer.max_epochs=2", "--trainer.limit_train_batches=5", "--trainer.limit_val_batches=2",
             "--trainer.deterministic=true", "--test_after_fit=false", "--data.augment=[hflip, rotation]",
             "--trainer.callbacks+=phases.StopAfter", "--early_stopping=null", *QUICK]
    main([*flags, "--trainer.logger.init_args.name=whole"])
    monkeypatch.setenv("STOP_AFTER", "1")
    main([*flags, "--trainer.logger.init_args.name=cut"])
    assert _epoch_of(tmp_path / "logs" / "cut" / "version_0" / "checkpoints" / "last.ckpt") == 0
    monkeypatch.delenv("STOP_AFTER")
    main([*flags, "--trainer.logger.init_args.name=cut", "--ckpt_path=last"])
    whole, _ = final_state(tmp_path / "logs" / "whole" / "version_0")
    resumed, _ = final_state(tmp_path / "logs" / "cut" / "version_0")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


@pytest.mark.parametrize("stream", ["false", "true"])
def test_a_run_stopped_mid_epoch_resumes_at_its_next_batch_and_ends_bit_identical(tmp_path, monkeypatch, stream):
    """In memory and streamed: Ctrl-C at the 8th batch of the second epoch (fetched and augmented,
    not trained) saves interrupted.ckpt; --ckpt_path last continues that epoch's order at that
    batch, not at the epoch's start (which threw the epoch's work away in memory), with dropout
    drawing what it drew, and ends with the uninterrupted run's weights and step count."""
    monkeypatch.syspath_prepend(str(REPO / "tests" / "helpers"))
    flags = ["fit", f"--data.stream={stream}", "--trainer.max_epochs=2", "--trainer.deterministic=true", "--test_after_fit=false",
             "--early_stopping=null", "--data.augment=[hflip, rotation]", "--model.net.init_args.dropout=0.3",
             "--trainer.callbacks+=phases.InterruptAt", *QUICK]
    main([*flags, "--trainer.logger.init_args.name=whole"])
    monkeypatch.setenv("INTERRUPT_EPOCH", "1")
    monkeypatch.setenv("INTERRUPT_BATCH", "7")
    with pytest.raises(SystemExit) as stopped:
        main([*flags, "--trainer.logger.init_args.name=cut"])
    assert stopped.value.code == 130
    cut_folder = tmp_path / "logs" / "cut" / "version_0" / "checkpoints"
    assert torch.load(cut_folder / "interrupted.ckpt", weights_only=True)["global_step"] == 20 + 7
    monkeypatch.delenv("INTERRUPT_EPOCH")
    main([*flags, "--trainer.logger.init_args.name=cut", "--ckpt_path=last"])
    whole, cut = (torch.load(tmp_path / "logs" / n / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
                  for n in ("whole", "cut"))
    assert cut["global_step"] == whole["global_step"] == 40  # not 47: the cut epoch was not started again
    assert all(torch.equal(whole["state_dict"][k], cut["state_dict"][k]) for k in whole["state_dict"])
    # what TensorBoard shows: the cut epoch's train/loss and train/acc average all its batches, as
    # the uninterrupted run's do (the batches before the stop travel in interrupted.ckpt), one run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def curve(name, tag):
        events = EventAccumulator(str(tmp_path / "logs" / name / "version_0"))
        events.Reload()
        return {e.step: e.value for e in events.Scalars(tag)}

    for tag in ("train/loss", "train/acc", "val/loss"):
        assert curve("cut", tag) == curve("whole", tag), tag
    assert sorted(p.name for p in (tmp_path / "logs" / "cut").iterdir()) == ["version_0"]


@pytest.mark.slow  # an end-to-end run of several processes; make test-all
def test_sigterm_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(cli("--trainer.logger.init_args.name=whole"), check=True, env=env, capture_output=True)
    whole = tmp_path / "logs" / "whole" / "version_0" / "checkpoints"
    best = next(p for p in whole.glob("epoch*.ckpt"))
    assert _epoch_of(best) < _epoch_of(whole / "last.ckpt") == 7  # the last epochs did not improve
    # the interrupted run: SIGTERM once last.ckpt is past the best epoch
    run = tmp_path / "logs" / "cut" / "version_0"
    process = subprocess.Popen(cli("--trainer.logger.init_args.name=cut", "--trainer.enable_progress_bar=true"),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((run / "checkpoints" / "last.ckpt").exists() and _epoch_of(run / "checkpoints" / "last.ckpt") >= 5):
        assert process.poll() is None and time.time() < deadline, process.stdout.read()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM; saved ") and "interrupted.ckpt" in err
    finished = [line for line in out.splitlines() if line.startswith("epoch ")]
    last = run / "checkpoints" / "last.ckpt"
    interrupted_at = _epoch_of(last)
    assert interrupted_at < 7, "the run finished before the signal: nothing was tested"
    # last.ckpt is the last finished epoch, not the best one
    assert interrupted_at + 1 == len(finished) or interrupted_at + 2 == len(finished)  # its line may be printed
    assert interrupted_at > _epoch_of(next((run / "checkpoints").glob("epoch*.ckpt")))
    # resume from last.ckpt: only the remaining epochs run, in the same folder, ending bit-identical
    resumed = subprocess.run(cli("--trainer.logger.init_args.name=cut", f"--ckpt_path={last}",
                                 "--trainer.enable_progress_bar=true"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {last} (after {interrupted_at + 1} epochs" in resumed.stderr
    epochs = [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs == [f"{e}/8" for e in range(interrupted_at + 2, 9)]
    assert not (tmp_path / "logs" / "cut" / "version_1").exists()  # continued in its own folder
    whole_weights, whole_metrics = final_state(tmp_path / "logs" / "whole" / "version_0")
    cut_weights, cut_metrics = final_state(run)
    assert whole_weights.keys() == cut_weights.keys()
    assert all(torch.equal(whole_weights[k], cut_weights[k]) for k in whole_weights)
    assert [m["best_model_score"] for m in whole_metrics.values()] == [m["best_model_score"] for m in cut_metrics.values()]
    # resuming a finished run trains nothing and says so
    again = subprocess.run(cli("--trainer.logger.init_args.name=cut", "--ckpt_path=last"), env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0 and "has already finished 8 epochs" in again.stdout
    assert torch.equal(final_state(run)[0][next(iter(cut_weights))], next(iter(cut_weights.values())))


@pytest.mark.slow  # an end-to-end run of several processes; make test-all
def test_ctrl_c_saves_interrupted_and_last_resumes_from_it(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(cli("--trainer.max_epochs=500"), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    run = tmp_path / "logs" / "default" / "version_0" / "checkpoints"
    deadline = time.time() + 120
    while not (run / "last.ckpt").exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # mid-epoch
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    assert "stopped by SIGINT; saved " in err and (run / "interrupted.ckpt").exists()
    assert not list(run.glob(".*.partial"))
    # --ckpt_path last takes the newer of last.ckpt and interrupted.ckpt, and says which
    newest = max([run / "last.ckpt", run / "interrupted.ckpt"], key=lambda p: p.stat().st_mtime_ns)
    resumed = subprocess.run(cli("--trainer.max_epochs=500", "--ckpt_path=last", "--trainer.max_steps=200"), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {newest.relative_to(tmp_path)}" in resumed.stderr


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


class Payload:
    """Unpickling this runs code: a weights_only load must refuse it."""

    def __reduce__(self):
        return (print, ("code from the checkpoint ran",))


DAMAGES = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:1000]), "cannot be read (truncated, corrupt"),
    "text": (lambda p: p.write_text("hello"), "cannot be read (truncated, corrupt"),
    "empty": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "foreign": (lambda p: torch.save({"weights": torch.zeros(2)}, p), "is not a Lightning checkpoint of this project"),
    "code payload": (lambda p: torch.save({"state_dict": Payload(), "pytorch-lightning_version": "2.6"}, p),
                     "not a safe PyTorch checkpoint"),
    "missing": (lambda p: p.unlink(), "no such file"),
    "epoch as text": (lambda p: _edited(p, epoch="3"), "has epoch='3', not a whole number >= 0"),
    "negative step": (lambda p: _edited(p, global_step=-5), "has global_step=-5, not a whole number >= 0"),
}


def _edited(path: Path, **fields) -> None:
    """A hand-edited file: the checkpoint as saved with some fields overwritten."""
    torch.save({**torch.load(path, weights_only=True), **fields}, path)


@pytest.fixture
def saved_run(tmp_path):
    ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--test_after_fit=false", *QUICK])
    return tmp_path / "logs" / "default" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_bad_checkpoint_files_stop_every_subcommand_with_one_line(tmp_path, capsys, saved_run, subcommand, damage):
    corrupt, message = DAMAGES[damage]
    path = tmp_path / "given.ckpt"
    path.write_bytes(saved_run.read_bytes())
    corrupt(path)
    capsys.readouterr()
    for given in (str(path), "last") if damage != "missing" else (str(path),):
        if given == "last":
            saved_run.write_bytes(path.read_bytes())
        with pytest.raises(SystemExit) as done:
            main([subcommand, f"--ckpt_path={given}", *QUICK])
        captured = capsys.readouterr()
        assert done.value.code == 2 and message in captured.err
        assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
        assert "code from the checkpoint ran" not in captured.out + captured.err
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["default"]  # no new log folder
    assert sorted(p.name for p in (tmp_path / "logs" / "default").iterdir()) == ["version_0"]
    assert not list((tmp_path / "logs" / "default" / "version_0").glob(subcommand))


def test_flags_that_conflict_with_the_checkpoint_are_named(tmp_path, capsys, saved_run):
    with pytest.raises(SystemExit) as done:
        main(["test", f"--ckpt_path={saved_run}", "--model.net.widths=[16,32,64]", "--data.normalize=minmax", *QUICK])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1
    assert "model.net.init_args.widths=[16, 32, 64] here, [32, 64, 128] in the checkpoint" in err
    assert "data.normalize='minmax' here, 'standardize' in the checkpoint" in err
    # flags that only change training are allowed on resume
    cli = ProjectCLI(args=["fit", "--ckpt_path=last", "--trainer.max_epochs=2", "--model.optimizer.lr=0.001",
                           "--test_after_fit=false", *QUICK])
    assert cli.trainer.current_epoch == 2


def test_resuming_into_the_runs_own_folder_says_so_without_lightnings_warning(tmp_path, capsys, saved_run, recwarn):
    capsys.readouterr()
    ProjectCLI(args=["fit", "--ckpt_path=last", "--trainer.max_epochs=2", "--test_after_fit=false", *QUICK])
    err = capsys.readouterr().err
    assert "in its own folder logs/default/version_0: its checkpoints stay, the next ones join them" in err
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]
    assert sorted(p.name for p in (tmp_path / "logs" / "default").iterdir()) == ["version_0"]


def test_another_models_checkpoint_brings_its_network_and_says_so(tmp_path, capsys):
    ProjectCLI(args=["fit", "--trainer.max_epochs=1", "--model.net=MLP", "--model.net.hidden=[24]",
                     "--test_after_fit=false", *QUICK])
    capsys.readouterr()
    cli = ProjectCLI(args=["test", "--ckpt_path=last", *QUICK])
    assert type(cli.model.net).__name__ == "MLP"
    assert "note: model.net is the checkpoint's MLP with its saved settings, not the configured ConvNet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:  # a network flag the checkpoint contradicts
        main(["test", "--ckpt_path=last", "--model.net=MLP", "--model.net.hidden=[32]", *QUICK])
    assert done.value.code == 2 and "model.net.init_args.hidden=[32] here, [24] in the checkpoint" in capsys.readouterr().err


def test_evaluations_write_beside_the_run_not_as_new_runs(tmp_path, saved_run):
    for subcommand in ("validate", "test", "predict"):
        ProjectCLI(args=[subcommand, f"--ckpt_path={saved_run}", *QUICK])
    run = saved_run.parents[1]
    assert sorted(p.name for p in (tmp_path / "logs" / "default").iterdir()) == ["version_0"]
    assert {"validate", "test", "predict"} <= {p.name for p in run.iterdir()}
    ProjectCLI(args=["validate", *QUICK])  # no checkpoint: a folder named for the subcommand
    assert (tmp_path / "logs" / "default-validate" / "version_0").is_dir()


def test_predict_writes_probabilities_per_sample(tmp_path, capsys, saved_run):
    import csv

    cli = ProjectCLI(args=["predict", f"--ckpt_path={saved_run}", "--data.predict_split=val", *QUICK])
    path = saved_run.parents[1] / "predict" / "predictions_val.csv"
    assert f"180 val images written to {path}" in capsys.readouterr().out
    rows = list(csv.DictReader(open(path)))
    dm = cli.datamodule
    assert len(rows) == len(dm.val_set) == 180
    model = ImageClassifier.load_from_checkpoint(saved_run).eval()
    with torch.no_grad():
        probabilities = model(dm.prepare(dm.val_set.images)).softmax(-1)
    for i in (0, 7, 179):
        row = rows[i]
        assert int(row["index"]) == i and int(row["true_label"]) == int(dm.val_set.labels[i])
        assert int(row["predicted_label"]) == int(probabilities[i].argmax())
        assert [float(row[f"p_{c}"]) for c in range(10)] == pytest.approx(probabilities[i].tolist(), abs=1e-5)


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_last_whole(tmp_path, capsys, saved_run, monkeypatch):
    before = saved_run.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.os, "fsync", disk_full)
    with pytest.raises(SystemExit) as done:
        main(["fit", "--ckpt_path=last", "--trainer.max_epochs=3", *QUICK])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 1 and err[-1].startswith("error: trainer.logger.save_dir=")
    assert "cannot hold checkpoint" in err[-1]
    assert "No space left on device" in err[-1] and "logs/default/version_0/checkpoints" in err[-1]
    assert f"after freeing space, --ckpt_path {saved_run.relative_to(tmp_path)} resumes from its epoch 1" in err[-1]
    assert saved_run.read_bytes() == before
    assert not list(saved_run.parent.glob(".*.partial"))
    # space again: the run continues from the epoch before the failure and ends
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    cli = ProjectCLI(args=["fit", "--ckpt_path=last", "--trainer.max_epochs=3", *QUICK])
    assert cli.trainer.current_epoch == 3 and "resuming from" in capsys.readouterr().err
    assert torch.load(saved_run, weights_only=True)["epoch"] == 2


def test_a_disk_full_at_the_first_epoch_says_there_is_nothing_to_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(checkpoints.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(SystemExit) as done:
        main(["fit", "--trainer.max_epochs=2", *QUICK])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 1 and "no earlier epoch was saved: after freeing space, run the same command again" in err[-1]


def test_leftover_partial_files_are_removed_on_the_next_save(tmp_path):
    (tmp_path / ".last.ckpt.partial").write_bytes(b"half")
    AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "epoch1.ckpt")
    assert sorted(os.listdir(tmp_path)) == ["epoch1.ckpt"]


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
    assert run.name == "version_10" and path.name == "last.ckpt"
    # a run stopped before its first epoch ended has only interrupted.ckpt; a newer one wins
    (tmp_path / "logs" / "x" / "version_11" / "checkpoints").mkdir(parents=True)
    (tmp_path / "logs" / "x" / "version_11" / "checkpoints" / "interrupted.ckpt").write_bytes(b"")
    path, run = resolve_checkpoint("last", str(tmp_path / "logs"), "x")
    assert run.name == "version_11" and path.name == "interrupted.ckpt"
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_checkpoint("nope.ckpt", "logs", "x")


def test_unwritable_logs_fail_before_training(tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the logs folder should be")
    with pytest.raises(SystemExit) as done:
        main(["fit", f"--trainer.logger.init_args.save_dir={blocker}/logs", *QUICK])
    assert done.value.code == 2
    assert f"trainer.logger.save_dir={blocker}/logs cannot hold" in capsys.readouterr().err


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


# --- a stop at any moment: one line, 128 + the signal, no empty run folder, and a way on -----------

HELPERS = REPO / "tests" / "helpers"


def paused_run(tmp_path: Path, phase: str, signum: int, *flags: str) -> tuple[int, str, str]:
    """A fit paused at ``phase`` (tests/helpers/phases.py) and sent ``signum`` there; at "startup"
    the signal comes one second after the start, while the libraries load."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PAUSE_AT": phase, "PHASE_DIR": str(tmp_path),
           "PYTHONPATH": str(HELPERS)}
    process = subprocess.Popen([sys.executable, "-m", "project", *PHASED, *flags], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + (1 if phase == "startup" else 120)
    while phase == "startup" and time.time() < deadline or phase != "startup" and not (tmp_path / phase).exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


PHASED = ["fit", "--trainer.max_epochs=2", "--data.train_size=300", "--data.batch_size=32", "--data.eval_batch_size=32",
          "--trainer.deterministic=true", "--data.class_path=phases.SlowData", "--trainer.callbacks+=phases.Pause", *QUICK]


@pytest.mark.parametrize("phase, signum", [pytest.param("startup", signal.SIGTERM, marks=pytest.mark.slow),
                                           ("loading", signal.SIGTERM),  # make test keeps a scheduler's stop
                                           pytest.param("loading", signal.SIGINT, marks=pytest.mark.slow)])
def test_a_stop_before_training_says_so_and_leaves_no_folder(tmp_path, phase, signum):
    code, _, err = paused_run(tmp_path, phase, signum)
    assert code == 128 + signum
    assert err.strip() == (f"stopped by {signal.Signals(signum).name} before training began; saved nothing; "
                           "run the same command again")
    assert not (tmp_path / "logs").exists()


def test_a_stop_in_the_sanity_check_saves_a_state_that_resumes(tmp_path):
    code, _, err = paused_run(tmp_path, "sanity", signal.SIGTERM)
    run = tmp_path / "logs" / "default" / "version_0"
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1] == (f"stopped by SIGTERM; saved {Path('logs/default/version_0/checkpoints/interrupted.ckpt')}; "
                                            "resume with: project fit --ckpt_path logs/default/version_0/checkpoints/"
                                            "interrupted.ckpt (and the same config)")
    assert "Received SIGTERM" not in err
    resumed = subprocess.run([sys.executable, "-m", "project", *PHASED, "--ckpt_path=last"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(HELPERS)})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    assert sorted(p.name for p in (tmp_path / "logs" / "default").iterdir()) == ["version_0"]


# Ctrl-C's path (KeyboardInterrupt) runs in make test-all: the suite stays under 10 minutes
@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])
def test_a_stop_in_the_test_after_fit_resumes_into_the_test(tmp_path, signum):
    code, _, err = paused_run(tmp_path, "test", signum)
    run = tmp_path / "logs" / "default" / "version_0"
    last = Path("logs/default/version_0/checkpoints/last.ckpt")
    assert code == 128 + signum, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        f"stopped by {signal.Signals(signum).name}; during the test after fit: training finished and is saved in "
        f"{last}; run the test with: project fit --ckpt_path {last} (and the same config)")
    assert "Detected KeyboardInterrupt" not in err and "Received SIGTERM" not in err
    assert not (run / "summary.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "project", *PHASED, "--ckpt_path=last"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(HELPERS)})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "training finished, its test after fit did not; testing now" in resumed.stderr
    assert "Run summary" in resumed.stdout
    # the best checkpoint was tested, with the figures a plain `project test` of it gives
    summary = json.loads((run / "summary.json").read_text())
    best = next((run / "checkpoints").glob("epoch*.ckpt"))
    assert summary["epochs"] == 2 and Path(summary["tested_checkpoint"]).name == best.name
    tested = ProjectCLI(args=["test", f"--ckpt_path={best}", "--data.train_size=300", "--data.eval_batch_size=32", *QUICK])
    assert summary["test"] == pytest.approx({k: float(v) for k, v in tested.trainer.callback_metrics.items()}, abs=1e-4)
