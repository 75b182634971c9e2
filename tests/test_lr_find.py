"""The learning-rate range test: the suggestion by hand, the plot and points it writes, its bad flags."""

import types

import numpy as np
import pytest

from project.cli import main
from project.lr_find import steepest_descent


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_lr_find_suggests_a_rate_and_plots_it(tmp_path, capsys):
    import csv

    main(["lr-find", "--num_training=30", "--min_lr=1e-5", "--max_lr=1"])
    out = capsys.readouterr().out
    folder = tmp_path / "logs" / "default-lr_find" / "version_0"
    assert (folder / "lr_find.png").stat().st_size > 10_000
    rows = list(csv.DictReader(open(folder / "lr_find.csv")))
    assert len(rows) == 30 and float(rows[0]["lr"]) == pytest.approx(1e-5)
    rates = [float(r["lr"]) for r in rows]
    assert all(b > a for a, b in zip(rates, rates[1:]))  # the rate grows every step
    suggested = float(out.split("suggested learning rate ")[1].split()[0])
    assert 1e-5 < suggested < 1 and f"--model.optimizer.init_args.lr={suggested:.3g}" in out
    assert not (tmp_path / "logs" / "default").exists()  # a test, not a run


def test_steepest_descent_per_decade_by_hand():
    # the loss falls as -log10(lr) squared around 1e-2: fastest per decade at the steepest point
    lrs = np.logspace(-5, 0, 51)
    x = np.log10(lrs)
    losses = 2.0 - np.tanh(2 * (x + 2.5))  # falls fastest at lr = 10 ** -2.5, then flattens
    result = types.SimpleNamespace(results={"lr": list(lrs), "loss": list(losses)})
    assert steepest_descent(result) == pytest.approx(10 ** -2.5, rel=0.13)
    flat = types.SimpleNamespace(results={"lr": list(lrs), "loss": [1.0] * 51})
    assert steepest_descent(flat) is None


@pytest.mark.parametrize("flags,line", [
    (["--mode", "cubic"], "error: --mode=cubic is not known; allowed: exponential, linear"),
    (["--num_training=1"], "error: --num_training=1; allowed: an integer >= 2"),
    (["--min_lr=0"], "error: --min_lr=0.0; allowed: a finite number > 0"),
    (["--max_lr=1e-7"], "error: --max_lr=1e-07; allowed: a finite number > min_lr (1e-06)"),
    (["--num_training=abc"], "error: --num_training=abc; allowed: an integer"),
])
def test_bad_flags_are_one_line_and_make_no_folder(tmp_path, capsys, flags, line):
    with pytest.raises(SystemExit) as done:
        main(["lr-find", *flags])
    assert done.value.code == 2 and capsys.readouterr().err.strip() == line
    assert not (tmp_path / "logs").exists()
