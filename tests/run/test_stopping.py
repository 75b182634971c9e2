"""Stopping a 2-process run (ddp_cpu, gloo) with a signal, as schedulers and people do
(project/run/stopping.py): every process is gone within seconds, one line on rank 0 names the
signal, the checkpoint and the resume command, the exit code is 128 + the signal, and
interrupted.ckpt holds the batch every rank reached. A hang fails the test after a bounded wait."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from project.run.stopping import StopTogether

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _stop_a_running_pair(tmp_path: Path, target: str, signum: int) -> tuple[int, float, str, list[int]]:
    """Starts `project fit` with configs/trainer/ddp_cpu.yaml, waits for its second epoch, sends
    ``signum`` to ``target`` (launcher: the process the user started; rank1: the process it
    launched; group: all of them) and returns (exit code, seconds to exit, stderr, ranks left)."""
    command = [sys.executable, "-m", "project", "fit", "--config", str(REPO / "configs" / "default.yaml"),
               "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"), "--trainer.max_epochs=200",
               "--early_stopping=null", "--model.net.init_args.widths=[8,16]", "--model.net.init_args.hidden=16"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out, err = [], []
    readers = [threading.Thread(target=lambda s=s, into=into: into.extend(s), daemon=True)
               for s, into in ((process.stdout, out), (process.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        deadline = time.time() + 180
        while not any(line.startswith("epoch 2/") for line in out):
            assert process.poll() is None and time.time() < deadline, "".join(err)[-2000:]
            time.sleep(0.1)
        ranks = [int(p) for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                                                text=True).stdout.split()]
        assert len(ranks) == 1, "ddp_cpu launches one more process"
        time.sleep(0.3)  # mid-epoch
        sent = time.time()
        {"launcher": lambda: os.kill(process.pid, signum), "rank1": lambda: os.kill(ranks[0], signum),
         "group": lambda: os.killpg(process.pid, signum)}[target]()
        code = process.wait(timeout=60)
        seconds = time.time() - sent
        for reader in readers:
            reader.join(timeout=10)
        time.sleep(1)
        return code, seconds, "".join(err), [r for r in ranks if _alive(r)]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def _check(tmp_path, code, seconds, err, left, signum):
    assert code == 128 + signum and seconds < 30 and not left, (code, seconds, left, err[-2000:])
    lines = [line for line in err.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    saved = tmp_path / "logs" / "default" / "version_0" / "checkpoints" / "interrupted.ckpt"
    assert lines[0] == (f"stopped by {signal.Signals(signum).name}; saved logs/default/version_0/checkpoints/interrupted.ckpt; "
                        "resume with: project fit --ckpt_path logs/default/version_0/checkpoints/interrupted.ckpt "
                        "(and the same config)")
    state = torch.load(saved, map_location="cpu", weights_only=False)
    batches = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert state["global_step"] > 0 and batches > 0  # stopped mid-epoch, after a batch every rank trained


def test_sigterm_to_the_launching_process_stops_both_ranks_in_seconds(tmp_path):
    _check(tmp_path, *_stop_a_running_pair(tmp_path, "launcher", signal.SIGTERM), signal.SIGTERM)


@pytest.mark.slow  # real 2-process runs, one per signal and target; make test-all
@pytest.mark.parametrize("target, signum", [("rank1", signal.SIGTERM), ("group", signal.SIGTERM),
                                            ("launcher", signal.SIGINT), ("rank1", signal.SIGINT),
                                            ("group", signal.SIGINT)])
def test_any_stop_signal_to_any_process_stops_both_ranks_in_seconds(tmp_path, target, signum):
    _check(tmp_path, *_stop_a_running_pair(tmp_path, target, signum), signum)


@pytest.mark.slow  # a torchrun agent and its two workers; make test-all
def test_sigterm_to_the_torchrun_agent_stops_every_worker_in_seconds(tmp_path):
    """What a scheduler does to a torchrun job: SIGTERM to the agent. It passes the signal on to its
    workers, which stop after the same batch and save; the agent then prints its own
    SignalException traceback (torchrun's, not a rank's) and exits."""
    torchrun = Path(sys.executable).with_name("torchrun")
    agent = subprocess.Popen(
        [str(torchrun), "--nproc_per_node=2", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", "-m", "project",
         "fit", "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"), "--trainer.max_epochs=2000",
         "--early_stopping=null", "--trainer.enable_progress_bar=false"], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    last = tmp_path / "logs" / "default" / "version_0" / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 180
        while not last.exists():
            assert agent.poll() is None and time.time() < deadline
            time.sleep(0.1)
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True,
                                                  text=True).stdout.split()]
        time.sleep(0.5)
        sent = time.time()
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=60)
        seconds = time.time() - sent
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
    time.sleep(1)
    assert seconds < 30 and len(workers) == 2 and not [w for w in workers if _alive(w)], (seconds, err[-2000:])
    lines = [line for line in err.splitlines() if line.startswith("stopped by")]
    assert lines == ["stopped by SIGTERM; saved logs/default/version_0/checkpoints/interrupted.ckpt; resume with: the "
                     "same torchrun command, with --ckpt_path logs/default/version_0/checkpoints/interrupted.ckpt"], err
    assert err.count("Traceback") == 1 and err.rstrip().endswith("got signal: 15"), err[-3000:]  # the agent's own


def test_one_process_is_left_to_lightning(make_trainer, digits):
    """Without DDP the callback neither installs a handler nor makes a collective."""
    before = signal.getsignal(signal.SIGTERM)
    stop = StopTogether()
    trainer = make_trainer(max_steps=2, limit_val_batches=1, callbacks=[stop])
    from project.model.classifier import ImageClassifier

    trainer.fit(ImageClassifier(), digits)
    assert stop.signum is None and signal.getsignal(signal.SIGTERM) is before


def test_restarted_names_what_restarted_the_job(monkeypatch):
    from project.run.stopping import restarted

    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert restarted() == ""
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert restarted() == ""
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert restarted() == "SLURM requeue 2"
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert restarted() == "torchrun restart 1"


@pytest.mark.slow  # two torchrun workers, one killed, restarted by torchrun; make test-all
def test_torchrun_max_restarts_resumes_the_run_by_itself(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    run = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--max-restarts=1", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0",
         "-m", "project", "fit", "--config", str(REPO / "configs" / "default.yaml"),
         "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"), "--trainer.max_epochs=5", "--early_stopping=null",
         "--trainer.callbacks+=ddp_probe.KillOnce"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "tests" / "helpers")})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "note: torchrun restart 1: resuming from the newest checkpoint of the run (--ckpt_path last)" in run.stderr
    assert "resuming from logs/default/version_0/checkpoints/last.ckpt (after 2 epochs" in run.stderr
    assert [p.name for p in (tmp_path / "logs" / "default").iterdir()] == ["version_0"]  # one run, one folder
    assert "test accuracy" in run.stdout
    state = torch.load(tmp_path / "logs/default/version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 4  # all 5 epochs


@pytest.mark.slow  # a SLURM job preempted, requeued and resumed; make test-all
def test_slurm_preemption_requeues_once_and_the_requeued_job_resumes_in_its_folder(tmp_path):
    """SLURM's variables and a recording scontrol on PATH: SIGUSR1 (#SBATCH --signal=SIGUSR1@90)
    saves Lightning's hpc checkpoint and requeues the job once; the SIGTERM that ends the job saves
    interrupted.ckpt; the requeued job (SLURM_RESTART_COUNT=1) resumes from it with no flag, in the
    same log folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train",
             "SLURM_NTASKS": "1", "SLURM_NNODES": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "SLURM_NODELIST": "localhost", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "project", "fit", "--config", str(REPO / "configs" / "default.yaml"),
               "--trainer.max_epochs=8", "--early_stopping=null", "--trainer.accelerator=cpu", "--trainer.devices=1"]
    job = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, **slurm, "SLURM_RESTART_COUNT": "0"})
    out = []
    reader = threading.Thread(target=lambda: out.extend(job.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 120
        while not any(line.startswith("epoch 3/") for line in out):
            assert job.poll() is None and time.time() < deadline
            time.sleep(0.05)
        job.send_signal(signal.SIGUSR1)
        deadline = time.time() + 30
        while not (tmp_path / "scontrol.log").exists():
            assert time.time() < deadline, "no scontrol requeue"
            time.sleep(0.05)
        job.send_signal(signal.SIGTERM)  # the end of the grace period
        assert job.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if job.poll() is None:
            job.kill()
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]  # once
    saved = tmp_path / "logs" / "default" / "version_0" / "checkpoints" / "interrupted.ckpt"
    assert saved.exists()
    requeued = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env={**os.environ, **slurm, "SLURM_RESTART_COUNT": "1"})
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "note: SLURM requeue 1: resuming from the newest checkpoint of the run" in requeued.stderr
    assert "resuming from logs/default/version_0/checkpoints/interrupted.ckpt" in requeued.stderr
    assert [p.name for p in (tmp_path / "logs" / "default").iterdir()] == ["version_0"]
