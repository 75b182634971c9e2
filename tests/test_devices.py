"""Multi-process and mixed-precision runs of the real CLI, on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.data.datamodule import ImageDataModule
from project.model.classifier import ImageClassifier
from project.run.cli import ProjectCLI, main

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.mark.slow  # an end-to-end run of several processes; make test-all
@pytest.mark.parametrize("stream", [False, True])
def test_two_process_ddp_on_cpu(tmp_path, stream):
    """Two processes train on disjoint shards with identical replicas, each rank augmenting with its
    own stream; validation and test are shared out between the ranks, every image once, and the
    synced figures equal a one-process evaluation of the same weights. In memory and streamed."""
    env = {**os.environ, "PROBE_DIR": str(tmp_path), "PYTHONPATH": str(REPO / "tests" / "helpers")}
    run = subprocess.run(
        [sys.executable, "-m", "project", "fit", "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"),
         "--trainer.max_epochs=2", "--trainer.limit_train_batches=4", "--data.augment=[hflip, rotation]",
         "--trainer.callbacks+=ddp_probe.SaveRankState", "--test_after_fit=true", "--test_ckpt=last",
         f"--data.stream={str(stream).lower()}", *QUICK],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # DDP kept the replicas identical; the augmentation drew differently on each rank
    assert all(torch.equal(ranks[0]["state_dict"][k], ranks[1]["state_dict"][k]) for k in ranks[0]["state_dict"])
    assert ranks[0]["augment_seed"] != ranks[1]["augment_seed"]
    # the logged validation accuracy is that of the whole validation split, not one rank's half
    run_dir = tmp_path / "logs" / "default" / "version_0"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    logged = events.Scalars("val/acc")[-1].value
    model = ImageClassifier.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt").eval()
    assert torch.equal(model.state_dict()["net.head.4.weight"], ranks[0]["state_dict"]["net.head.4.weight"])
    dm = ImageDataModule()
    dm.setup("fit")
    with torch.no_grad():
        hand = {name: (model(dm.prepare(split.images)).argmax(-1) == split.labels).float().mean().item()
                for name, split in (("val", dm.val_set), ("test", dm.test_set))}
    assert logged == pytest.approx(hand["val"], abs=1e-6)
    tested = json.loads((run_dir / "summary.json").read_text())["test"]["test/acc"]
    assert tested == pytest.approx(hand["test"], abs=1e-6)
    assert not (run_dir.parent / "version_1").exists()  # one log folder: rank 0 logs


def test_bf16_mixed_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = ProjectCLI(args=["fit", "--trainer.precision=bf16-mixed", "--trainer.max_epochs=2", "--penalty.l2=0.001",
                           "--test_after_fit=true", *QUICK])
    assert cli.trainer.precision == "bf16-mixed"
    assert 0.0 < cli.fit_metrics["test/acc"] <= 1.0
    events = EventAccumulator(str(tmp_path / "logs" / "default" / "version_0"))
    events.Reload()
    penalties = [e.value for e in events.Scalars("train/penalty")]
    assert penalties and all(p > 0 for p in penalties)


@pytest.mark.parametrize("name", ["cpu", "gpu", "ddp", "ddp_cpu", "multinode"])
def test_trainer_configs_parse(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    path = REPO / "configs" / "trainer" / f"{name}.yaml"
    assert path.read_text().startswith(f"# {name}: ")
    with pytest.raises(SystemExit) as done:  # parse only: the GPU configs cannot run here
        main(["fit", "--config", str(path), "--print_config"])
    assert done.value.code == 0
    assert "strategy" in capsys.readouterr().out


@pytest.mark.parametrize("precision,accelerator,cuda,native,expected", [
    ("bf16-mixed", "gpu", True, True, "bf16-mixed"),     # Ampere and newer
    ("bf16-mixed", "gpu", True, False, "16-mixed"),      # V100, T4: bf16 only emulated
    ("bf16-mixed", "auto", True, False, "16-mixed"),
    ("bf16-mixed", "cpu", True, False, "bf16-mixed"),    # asked for the CPU: the GPU does not matter
    ("bf16-mixed", "auto", False, False, "bf16-mixed"),  # no GPU at all
    ("32-true", "gpu", True, False, "32-true"),
    ("16-mixed", "cpu", True, True, "bf16-mixed"),       # a CPU's 16-mixed is bf16 autocast: say so, record it
    ("16-mixed", "auto", False, False, "bf16-mixed"),
    ("16-mixed", "auto", True, False, "16-mixed"),       # a GPU: float16 with a scaler
    ("16-mixed", "gpu", True, True, "16-mixed"),
])
def test_the_precision_follows_the_gpus_native_bf16(precision, accelerator, cuda, native, expected):
    from project.devices import precision_for

    assert precision_for(precision, accelerator, cuda, native) == expected


@pytest.mark.parametrize("strategy,forks", [
    ("ddp_fork", True), ("ddp_notebook", True), ("ddp", False), ("ddp_spawn", False), ("auto", False), (None, False),
    ({"class_path": "lightning.pytorch.strategies.DDPStrategy", "init_args": {"start_method": "fork"}}, True),
    ({"class_path": "lightning.pytorch.strategies.DDPStrategy", "init_args": {"process_group_backend": "gloo"}}, False),
])
def test_which_strategies_fork_their_processes(strategy, forks):
    from lightning.pytorch import Trainer

    from project.devices import will_fork

    assert will_fork(strategy) is forks
    if isinstance(strategy, str) and strategy.startswith("ddp"):  # the built strategy answers the same
        trainer = Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False, enable_checkpointing=False)
        assert will_fork(trainer.strategy) is forks


@pytest.mark.parametrize("fork", [True, False])
def test_a_process_that_will_fork_asks_the_gpu_from_a_child(monkeypatch, fork):
    """CUDA initialised in the launching process breaks ddp_fork and ddp_notebook ("Cannot
    re-initialize CUDA in forked subprocess"): there the GPU's capability, bf16 and free memory are
    asked by a child process. (The GPU's side runs in make gpu-check; no GPU here.)"""
    import json
    import subprocess as sp

    from project import devices

    answer = {"capability": [7, 0], "free": 5 * 2**30, "total": 16 * 2**30, "native_bf16": False}
    asked = []

    def child(command, **kwargs):
        asked.append(command)
        return sp.CompletedProcess(command, 0, json.dumps(answer) + "\n", "")

    def in_process(*args, **kwargs):
        asked.append("in process")
        return {"mem_get_info": (answer["free"], answer["total"])}.get("mem_get_info")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(devices.subprocess, "run", child)
    monkeypatch.setattr(torch.cuda, "mem_get_info", in_process)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: (7, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert devices.gpu_facts(0, fork=fork) == answer
    assert (asked[0][1:3] == ["-c", devices._ASK]) if fork else asked == ["in process"]
    trainer = {"precision": "bf16-mixed", "accelerator": "gpu", "strategy": "ddp_fork" if fork else "ddp"}

    class Config(dict):
        precision = None

    config = Config(trainer)
    devices.fall_back_to_fp16(config)
    assert config.precision == "16-mixed"  # a V100's emulated bf16: float16 with a scaler


def test_16_mixed_on_a_cpu_runs_and_is_recorded_as_bf16_mixed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = ProjectCLI(args=["fit", "--trainer.precision=16-mixed", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
                           "--test_after_fit=false", *QUICK])
    assert cli.trainer.precision == "bf16-mixed"
    assert "using precision bf16-mixed (recorded as such" in capsys.readouterr().err
    saved = (tmp_path / "logs" / "default" / "version_0" / "config.yaml").read_text()
    assert "precision: bf16-mixed" in saved and "16-mixed\n" not in saved.replace("bf16-mixed", "")


@pytest.mark.slow  # six end-to-end runs, three of them two processes; make test-all
def test_a_fixed_total_batch_makes_two_processes_follow_one(tmp_path):
    """With data.batch_size_total the 2-process run averages each step over the same 64 images as
    the 1-process run, so it takes the same number of steps (without it, half as many), and its
    validation loss curve follows the 1-process one within seed noise: over seeds 0-2, at every
    epoch the two means differ by less than three standard errors of their difference. (One seed
    alone is not enough: seed 0's 2-process curve bumps to 0.32 at epoch 3, against 0.20-0.22 for
    the 1-process seeds, and is back in their range at epoch 4.)"""
    flags = ["--data.batch_size_total=64", "--trainer.max_epochs=4", "--early_stopping=null", "--test_after_fit=false",
             "--trainer.deterministic=true", *QUICK]
    curves: dict[str, list] = {"one": [], "two": []}
    steps = set()
    for seed in (0, 1, 2):
        for name, extra in (("one", []), ("two", ["--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml")])):
            run = subprocess.run([sys.executable, "-m", "project", "fit", *extra, *flags, f"--seed_everything={seed}",
                                  f"--trainer.logger.init_args.name={name}{seed}"], cwd=tmp_path, capture_output=True,
                                 text=True, timeout=600)
            assert run.returncode == 0, run.stderr[-3000:]
            folder = tmp_path / "logs" / f"{name}{seed}" / "version_0"
            events = EventAccumulator(str(folder))
            events.Reload()
            curves[name].append([e.value for e in events.Scalars("val/loss")])
            steps.add(torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"])
    assert steps == {4 * 20}  # 1,257 digits / 64 a step, 4 epochs, in both
    one, two = torch.tensor(curves["one"]), torch.tensor(curves["two"])
    se = (one.var(0) / 3 + two.var(0) / 3).sqrt()
    assert ((one.mean(0) - two.mean(0)).abs() < 3 * se).all(), (one, two)
    assert (two[:, -1] < 0.5 * two[:, 0]).all()  # and it learned


@pytest.mark.slow  # two DDP processes, 15 s each; make test-all (make test keeps tests/run/test_stopping.py's)
@pytest.mark.parametrize("killed", [1, 0])
def test_a_lost_peer_is_one_line_naming_what_to_resume_from(tmp_path, killed):
    """One process of a 2-process ddp_cpu run is SIGKILLed in its second epoch (a node lost, an
    out-of-memory kill). The survivor (rank 0, which launched rank 1, or rank 1 when rank 0 dies)
    stops with one line that names the failure, the saved epoch and the resume command, and exits
    non-zero; it used to print pages of gloo tracebacks."""
    env = {**os.environ, "KILL_RANK": str(killed), "PYTHONPATH": str(REPO / "tests" / "helpers")}
    run = subprocess.run(
        [sys.executable, "-m", "project", "fit", "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"),
         "--trainer.max_epochs=3", "--trainer.limit_train_batches=5", "--trainer.callbacks+=ddp_probe.KillRank",
         "--test_after_fit=false", *QUICK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    survivor = 1 - killed
    last = Path("logs") / "default" / "version_0" / "checkpoints" / "last.ckpt"
    line = f"rank {survivor} of 2: lost a peer process ("
    said = [x for x in run.stderr.splitlines() if x.startswith(line)]
    assert len(said) == 1, run.stderr[-3000:]
    assert said[0].endswith(f"training stopped; saved {last} after epoch 1; resume with: project fit --ckpt_path last "
                            "(and the same config)"), said[0]
    # the rank that went, and how: rank 0 launched rank 1 and reads its end; rank 1 sees rank 0 gone
    how = "was killed by SIGKILL" if killed == 1 else "ended"
    assert f"lost a peer process (rank {killed} (pid " in said[0] and f") {how}; " in said[0], said[0]
    assert "Traceback" not in run.stderr and "[rank" not in run.stderr
    assert torch.load(tmp_path / last, weights_only=True)["epoch"] == 0


@pytest.mark.slow  # three end-to-end 2-process runs; make test-all
def test_each_rank_resumes_its_own_augmentation_stream(tmp_path):
    """Each rank saves and restores its own random streams (global and augmentation). Cut after 1 of
    2 epochs and resumed, a 2-process ddp_cpu run ends with each rank's augmentation stream exactly
    where the uninterrupted run's ends, and with its weights, bit for bit; before, every rank
    restored rank 0's streams."""
    flags = [sys.executable, "-m", "project", "fit", "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"),
             "--early_stopping=null", "--test_after_fit=false", "--trainer.deterministic=true",
             "--trainer.max_epochs=2", "--trainer.callbacks+=phases.StopAfter", *QUICK]

    def fit(name, *extra, stop_after=""):
        env = {**os.environ, "PYTHONPATH": str(REPO / "tests" / "helpers"), "STOP_AFTER": stop_after}
        run = subprocess.run([*flags, f"--trainer.logger.init_args.name={name}", *extra], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        return torch.load(tmp_path / "logs" / name / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)

    whole = fit("whole")
    half = fit("cut", stop_after="1")
    assert half["epoch"] == 0
    streams = half["ImageDataModule"]["augment_rng"]
    assert len(streams) == 2 and not torch.equal(*streams)  # each rank's own stream
    assert len(half["callbacks"]["RandomState"]["ranks"]) == 2
    resumed = fit("cut", "--ckpt_path=last")
    assert resumed["global_step"] == whole["global_step"]
    for rank in (0, 1):
        assert torch.equal(resumed["ImageDataModule"]["augment_rng"][rank], whole["ImageDataModule"]["augment_rng"][rank])
    assert all(torch.equal(whole["state_dict"][k], resumed["state_dict"][k]) for k in whole["state_dict"])
