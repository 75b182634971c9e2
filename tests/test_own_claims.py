"""The lecture's claims on a problem of one's own (docs/own-problem.md): the page's files (its
network, baseline, experiment and claims file, written from the page) in a folder outside the
project, the study run from there with real processes on tiny runs, and each mistake a user makes
in those files one line before any run, nothing written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from project import figures
from project.errors import SettingError
from project.lab.claims import load
from project.lab.configs import check_configs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def problem(tmp_path):
    return figures.own_problem(tmp_path / "digits_lab", per_class=50)  # 500 digits: a training split of 350


def _lab(folder: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the folder's own modules, found by the lab
    return subprocess.run([sys.executable, "-m", "project.lab", *flags], cwd=folder, capture_output=True, text=True,
                          env=env, timeout=600)


def test_the_pages_claims_run_from_the_problems_folder(problem):
    """Two of the page's claims (its dropout and its augment.yaml), two seeds, one epoch a run, two
    worker processes: the baseline is the page's, its network imports from the folder, its data_dir
    is the folder's, and the page says so; the project's own logs are untouched."""
    before = sorted(p.name for p in (ROOT / "logs").iterdir())
    done = _lab(problem, "--until-decided", "--claims", "claims.yaml", "--name", "mine", "--seeds", "0,1",
                "--max-seeds", "2", "--experiments", "model.net.init_args.dropout=0.5,augment.yaml", "--jobs", "2",
                "--", "--trainer.max_epochs=1")
    assert done.returncode == 0, done.stderr[-2000:]
    out = problem / "logs" / "compare" / "mine"
    document = json.loads((out / "conclusions.json").read_text())
    assert [c["technique"] for c in document["claims"]] == ["model.net.init_args.dropout=0.5", "augment.yaml"]
    baseline = document["baseline"]
    assert baseline["source"] == "baseline.yaml"
    assert baseline["settings"]["model/net"] == "SmallCNN" and baseline["settings"]["data/data_dir"] == "digits"
    assert "model/net/widths" not in baseline["carried"]  # nothing of the lecture's ConvNet
    page = (out / "conclusions.md").read_text()
    assert "Baseline: `baseline.yaml`: " in page and "data/train_size=300" in page
    summary = json.loads((out / "runs" / "augment.yaml" / "seed_1" / "summary.json").read_text())
    assert summary["test"]["unused/acc"] > 0  # measured on the 50 unused images of the folder's digits
    assert (out / "report.png").stat().st_size > 10_000
    assert sorted(p.name for p in (ROOT / "logs").iterdir()) == before


@pytest.mark.parametrize("said,changes", figures.OWN_MISTAKES, ids=[s for s, _ in figures.OWN_MISTAKES])
def test_a_mistake_in_the_files_is_one_line_before_any_run(problem, said, changes):
    for name, (old, new) in changes.items():
        text = (problem / name).read_text()
        assert old in text
        (problem / name).write_text(text.replace(old, new, 1))
    done = _lab(problem, "--until-decided", "--claims", "claims.yaml", "--name", "mine")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines and lines[-1].startswith("error: ") and not done.stdout
    said = {"claims.yaml: baseline: nowhere.yaml": "baseline=nowhere.yaml is not a file",
            "claims.yaml: experiment: model.net.init_args.drop_rate=0.5":
                "model.net.drop_rate=0.5 is not a setting of my_nets.SmallCNN (did you mean dropout?) in experiment "
                "model.net.init_args.drop_rate=0.5 on the baseline baseline.yaml; allowed: width, norm, dropout",
            "augment.yaml holds a list": "claims[1].experiment=augment.yaml holds a YAML list"}[said]
    assert said in lines[-1], lines[-1]
    assert not (problem / "logs").exists()


def test_a_timm_baselines_dropout_is_its_drop_rate(tmp_path):
    """The issue's own case: a claim about timm's dropout is checked against the timm network the
    claims file's baseline names, not the lecture's ConvNet."""
    (tmp_path / "claims.yaml").write_text(
        "baseline: {model: {net: {class_path: project.model.zoo.Timm, init_args: {name: resnet18}}}, "
        "data: {train_size: 100}, trainer: {max_epochs: 1}}\n"
        "claims:\n - {claim: timm dropout, experiment: model.net.init_args.drop_rate=0.5, metric: gap, expect: lower}\n")
    file = load(tmp_path / "claims.yaml")
    check_configs(["baseline", "model.net.init_args.drop_rate=0.5"], [], "both", read_data=False,
                  baseline=file.baseline, root=file.root)
    with pytest.raises(SettingError, match=r"model.net.dropout=0.5 is not a setting of Timm \(did you mean drop_rate\?\)"):
        check_configs(["model.net.init_args.dropout=0.5"], [], "both", read_data=False, baseline=file.baseline,
                      root=file.root)
