"""Multi-process and mixed-precision runs of the real CLI, on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.cli import ProjectCLI, main
from project.data import ImageDataModule
from project.model import ImageClassifier

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.mark.slow  # an end-to-end run of several processes; make test-all
def test_two_process_ddp_on_cpu(tmp_path):
    env = {**os.environ, "PROBE_DIR": str(tmp_path), "PYTHONPATH": str(REPO / "tests" / "helpers")}
    run = subprocess.run(
        [sys.executable, "-m", "project", "fit", "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"),
         "--trainer.max_epochs=2", "--trainer.limit_train_batches=4", "--data.augment=[hflip, rotation]",
         "--trainer.callbacks+=ddp_probe.SaveRankState", "--test_after_fit=false", *QUICK],
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
        hand = (model(dm.prepare(dm.val_set.images)).argmax(-1) == dm.val_set.labels).float().mean().item()
    assert logged == pytest.approx(hand, abs=1e-6)
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


def test_16_mixed_on_a_cpu_runs_and_is_recorded_as_bf16_mixed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = ProjectCLI(args=["fit", "--trainer.precision=16-mixed", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
                           "--test_after_fit=false", *QUICK])
    assert cli.trainer.precision == "bf16-mixed"
    assert "using precision bf16-mixed (recorded as such" in capsys.readouterr().err
    saved = (tmp_path / "logs" / "default" / "version_0" / "config.yaml").read_text()
    assert "precision: bf16-mixed" in saved and "16-mixed\n" not in saved.replace("bf16-mixed", "")


@pytest.mark.slow  # two end-to-end runs, one of them two processes; make test-all
def test_a_fixed_total_batch_makes_two_processes_follow_one(tmp_path):
    """With data.batch_size_total the 2-process run averages each step over the same 64 images as the
    1-process run: the same number of steps (without it, half as many). Its validation loss does
    not yet follow the 1-process run's within seed noise (0.32 against 0.20-0.22 after 3 epochs):
    open in issue 28, so the curve is only required to fall here."""
    flags = ["--data.batch_size_total=64", "--trainer.max_epochs=4", "--early_stopping=null", "--test_after_fit=false",
             "--trainer.deterministic=true", *QUICK]
    curves = {}
    for name, extra in (("one", []), ("two", ["--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml")])):
        run = subprocess.run([sys.executable, "-m", "project", "fit", *extra, *flags,
                              f"--trainer.logger.init_args.name={name}"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        events = EventAccumulator(str(tmp_path / "logs" / name / "version_0"))
        events.Reload()
        curves[name] = [e.value for e in events.Scalars("val/loss")]
        saved = torch.load(tmp_path / "logs" / name / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
        curves[f"{name} steps"] = saved["global_step"]
    assert curves["one steps"] == curves["two steps"] == 4 * 20  # 1,257 digits / 64 a step, 4 epochs
    assert curves["two"][-1] < 0.5 * curves["two"][0]  # it learned


@pytest.mark.slow  # three end-to-end 2-process runs; make test-all
def test_each_rank_resumes_its_own_augmentation_stream(tmp_path):
    """Each rank saves and restores its own random streams (global and augmentation). Resumed after
    1 of 2 epochs, a 2-process ddp_cpu run ends with each rank's augmentation stream exactly where
    the uninterrupted run's ends; before, every rank restored rank 0's. (Its weights are not yet
    bit-identical to the uninterrupted run's: neither are a 1-process run's resumed after 1 of 2
    epochs of the default configuration, an open finding of issue 28.)"""
    flags = [sys.executable, "-m", "project", "fit", "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"),
             "--early_stopping=null", "--test_after_fit=false", "--trainer.deterministic=true", *QUICK]

    def fit(name, *extra):
        run = subprocess.run([*flags, f"--trainer.logger.init_args.name={name}", *extra], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        return torch.load(tmp_path / "logs" / name / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)

    whole = fit("whole", "--trainer.max_epochs=2")
    half = fit("cut", "--trainer.max_epochs=1")
    streams = half["ImageDataModule"]["augment_rng"]
    assert len(streams) == 2 and not torch.equal(*streams)  # each rank's own stream
    assert len(half["callbacks"]["RandomState"]["ranks"]) == 2
    resumed = fit("cut", "--trainer.max_epochs=2", "--ckpt_path=last")
    assert resumed["global_step"] == whole["global_step"]
    for rank in (0, 1):
        assert torch.equal(resumed["ImageDataModule"]["augment_rng"][rank], whole["ImageDataModule"]["augment_rng"][rank])
