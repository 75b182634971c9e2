"""make gpu-check: the script's own tests, on the CPU (its GPU side needs a GPU)."""

import pytest

from project.run import gpu_check


def test_without_a_gpu_it_says_nothing_was_verified(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "gpu-check: torch finds no CUDA GPU on this machine; nothing was verified"
    assert not any(tmp_path.iterdir())


@pytest.mark.slow  # eight real runs of the CLI; make test-all
def test_the_script_runs_its_checks_on_the_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert gpu_check.main(["--accelerator", "cpu", "--quick", "--out", "report"]) == 0
    report = (tmp_path / "report" / "report.txt").read_text().splitlines()
    assert report[0].startswith("gpu-check on CPU") and "0 failed of 8" in report[0]
    assert sum(line.startswith("ok ") for line in report) == 8
    assert any("bit-identical" in line and "difference 0.00e+00" in line for line in report)
    assert [line.split(":")[0] for line in report if line.startswith("skipped")] == [
        "skipped  precision choice", "skipped  ddp_fork on a GPU", "skipped  sync_batchnorm over 2 GPUs"]
