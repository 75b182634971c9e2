"""data.stream: the LitData path, on real files the tests write (an image folder of genuine MNIST
PNGs, the digits), against the in-memory path."""

import json
from pathlib import Path

import pytest
import torch

from project.data import stream
from project.data.datamodule import ImageDataModule
from project.run.cli import main
from tests.test_bad_inputs import assert_one_line
from tests.test_own_problem import summary_value, write_folder

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_the_streamed_splits_and_statistics_are_the_in_memory_ones():
    """The same settings give the same split, the same clean training subset and the same
    normalization statistics on both paths (the statistics summed a batch at a time)."""
    memory = ImageDataModule(seed=3)
    memory.setup()
    streamed = ImageDataModule(seed=3, stream=True)
    streamed.setup()
    for split in ("val_set", "test_set", "train_clean_set"):
        assert torch.equal(getattr(memory, split).labels, getattr(streamed, split).labels), split
    # the training split is written shuffled (LitData shuffles within chunks): the same images
    assert torch.equal(memory.train_set.labels.sort().values, streamed.train_set.labels.sort().values)
    assert torch.equal(memory.val_set.head(5), streamed.val_set.head(5))
    assert torch.allclose(memory.mean, streamed.mean, atol=1e-6) and torch.allclose(memory.std, streamed.std, atol=1e-6)
    images, labels = next(iter(streamed.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (64, 1, 8, 8) and labels.dtype == torch.long


def test_a_streamed_image_folder_trains_within_two_points_of_the_in_memory_path(tmp_path, capsys):
    write_folder(tmp_path / "digits", per_class=150, splits=("train", "test"))
    flags = ["fit", *QUICK, "--data.dataset=image_folder", "--data.data_dir=digits", "--trainer.max_epochs=4",
             "--data.augment=[]"]
    accuracy = {}
    for name, extra in (("memory", []), ("stream", ["--data.stream=true"])):
        main([*flags, *extra, f"--trainer.logger.init_args.name={name}"])
        accuracy[name] = summary_value(capsys.readouterr().out, "test accuracy")
    assert accuracy["memory"] >= 0.9 and abs(accuracy["stream"] - accuracy["memory"]) <= 0.02, accuracy
    # the chunks hold the folder's images, decoded once: 1,500 training and 1,500 test images
    meta = json.loads(next(Path("data/stream").glob("image_folder-*/meta.json")).read_text())
    assert meta["counts"]["test"] == 1500 and meta["counts"]["train"] + meta["counts"]["val"] == 1500


def test_the_chunks_are_reused_when_nothing_changed_and_rebuilt_when_something_did(tmp_path, capsys):
    write_folder(tmp_path / "mine", per_class=20, classes=range(3))
    prepare = ["prepare", "--data.dataset=image_folder", "--data.data_dir=mine"]
    main(prepare)
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert first.startswith("prepared: data/stream/image_folder-") and "train 42, val 6, test 12" in first
    folder = Path(first.split()[1])
    written = (folder / "meta.json").stat().st_mtime_ns
    main(prepare)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"already prepared (reused): {folder} ")
    assert (folder / "meta.json").stat().st_mtime_ns == written
    main([*prepare, "--data.val_fraction=0.2"])  # a setting that changes the split
    assert Path(capsys.readouterr().out.strip().splitlines()[-1].split()[1]) != folder
    write_folder(tmp_path / "mine", per_class=21, classes=range(3))  # one more image per class
    main(prepare)
    changed = capsys.readouterr().out.strip().splitlines()[-1]
    assert changed.startswith("prepared: ") and "train 43, val 7, test 13" in changed and changed.split()[1] != str(folder)
    assert len(list(Path("data/stream").iterdir())) == 3


def test_two_processes_started_together_convert_once(tmp_path):
    """torchrun starts every rank at once: one converts, the others wait and reuse its chunks."""
    import subprocess
    import sys

    runs = [subprocess.Popen([sys.executable, "-m", "project", "prepare", "--data.dataset=mnist5k"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outs
    lines = sorted(out.strip().splitlines()[-1].split(":")[0] for out, _ in outs)
    assert lines == ["already prepared (reused)", "prepared"]
    assert sum("converting data set mnist5k" in err for _, err in outs) == 1
    assert len([f for f in Path("data/stream").iterdir()]) == 1  # the chunks; the lock file is gone


def test_a_stopped_conversion_is_done_again(tmp_path):
    dm = ImageDataModule(stream=True)
    folder = stream.cache_folder(dm.info, dm.hparams)
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "chunk-0-0.bin").write_bytes(b"half")  # no meta.json: the conversion did not finish
    dm.setup()
    assert (folder / "meta.json").is_file() and len(dm.train_set) == 1257


@pytest.mark.parametrize("damage", ["truncated", "missing", "garbage"])
def test_a_damaged_chunk_stops_with_one_line_naming_it(tmp_path, capsys, damage):
    main(["prepare"])
    chunk = next(Path("data/stream").glob("digits-*/train/chunk-*.bin"))
    size = chunk.stat().st_size
    if damage == "truncated":
        chunk.write_bytes(chunk.read_bytes()[: size // 2])
    elif damage == "missing":
        chunk.unlink()
    else:  # the right size, unreadable content
        chunk.write_bytes(b"\xff" * size)
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["fit", "--data.stream=true", "--trainer.max_epochs=1", *QUICK])
    out, err = capsys.readouterr()
    says = f"chunk train/{chunk.name}" + (" that does not decode" if damage == "garbage" else ": ")
    line = assert_one_line(done.value.code, out, err, "data.stream_dir=data/stream/digits-", 2, says)
    assert "remove the folder and run again to rebuild it" in line
    assert not Path("logs").exists()  # every chunk is looked at before the Trainer makes a log folder


@pytest.mark.parametrize("flags,named,says", [
    (["--data.stream_dir=elsewhere"], "data.stream_dir=elsewhere", "only read when streaming"),
    (["--data.stream=true", "--data.stream_dir=afile"], "data.stream_dir=afile", "is a file"),
])
def test_stream_settings_are_checked_before_any_work(tmp_path, capsys, flags, named, says):
    Path("afile").write_text("x")
    with pytest.raises(SystemExit) as done:
        main(["fit", *flags, *QUICK])
    assert_one_line(done.value.code, *capsys.readouterr(), named, 2, says)
    assert not Path("logs").exists() and not Path("data").exists()


@pytest.mark.slow  # three 2-process runs; make test-all
@pytest.mark.parametrize("stream", ["true", "false"])
def test_a_two_process_run_stopped_mid_epoch_resumes_bit_identical(tmp_path, stream):
    """Both ranks stopped at the 5th batch of epoch 2 (Ctrl-C), resumed with --ckpt_path last: each
    rank continues its own shard at its next batch, streamed and in memory, and the run ends with
    the uninterrupted run's weights (9 steps an epoch streamed: LitData gives each rank whole
    batches; 10 in memory: the distributed sampler's 629 images a rank, the last batch of 53)."""
    import os
    import subprocess
    import sys

    flags = [sys.executable, "-m", "project", "fit", "--config", str(REPO / "configs" / "trainer" / "ddp_cpu.yaml"),
             f"--data.stream={stream}", "--trainer.max_epochs=2", "--trainer.deterministic=true", "--test_after_fit=false",
             "--early_stopping=null", "--data.augment=[hflip, rotation]", "--trainer.callbacks+=phases.InterruptAt",
             *QUICK]

    def fit(name, *extra, stop=False):
        env = {**os.environ, "PYTHONPATH": str(REPO / "tests" / "helpers"),
               **({"INTERRUPT_EPOCH": "1", "INTERRUPT_BATCH": "4"} if stop else {})}
        return subprocess.run([*flags, f"--trainer.logger.init_args.name={name}", *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    assert fit("whole").returncode == 0
    stopped = fit("cut", stop=True)
    assert stopped.returncode == 130 and "saved logs/cut/version_0/checkpoints/interrupted.ckpt" in stopped.stderr
    assert fit("cut", "--ckpt_path=last").returncode == 0
    whole, cut = (torch.load(tmp_path / "logs" / n / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
                  for n in ("whole", "cut"))
    assert cut["global_step"] == whole["global_step"] == 2 * (9 if stream == "true" else 10)
    assert all(torch.equal(whole["state_dict"][k], cut["state_dict"][k]) for k in whole["state_dict"])
