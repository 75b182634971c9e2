"""The learning-rate range test: the suggestion by hand, the plot and points it writes, its bad flags."""

import types

import numpy as np
import pytest

from project.run.cli import main
from project.run.lr_find import steepest_descent
from tests.test_bad_inputs import assert_one_line


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
    (["--num_training=1"], "error: --num_training=1; allowed: an integer >= 20"),
    (["--min_lr=0"], "error: --min_lr=0.0; allowed: a finite number > 0"),
    (["--max_lr=1e-7"], "error: --max_lr=1e-07; allowed: a finite number > min_lr (1e-06)"),
    (["--num_training=abc"], "error: --num_training=abc; allowed: an integer"),
])
def test_bad_flags_are_one_line_and_make_no_folder(tmp_path, capsys, flags, line):
    with pytest.raises(SystemExit) as done:
        main(["lr-find", *flags])
    assert done.value.code == 2 and capsys.readouterr().err.strip() == line
    assert not (tmp_path / "logs").exists()


LR_FIND_BAD = [
    (["--mode", "cubic"], "--mode=cubic is not known"),
    (["--mode=quadratic"], "--mode=quadratic is not known"),
    (["--num_training=abc"], "--num_training=abc"),
    (["--num_training=0"], "--num_training=0"),
    (["--num_training=-5"], "--num_training=-5"),
    (["--num_training=10", "--mode=linear"], "--num_training=10"),
    (["--min_lr=0"], "--min_lr=0.0"),
    (["--min_lr=-1"], "--min_lr=-1.0"),
    (["--min_lr=nan"], "--min_lr=nan"),
    (["--min_lr=inf"], "--min_lr=inf"),
    (["--min_lr=abc"], "--min_lr=abc"),
    (["--max_lr=1e-7"], "--max_lr=1e-07"),
    (["--max_lr=nan"], "--max_lr=nan"),
    (["--max_lr=inf"], "--max_lr=inf"),
    (["--min_lr=0.1", "--max_lr=0.1"], "--max_lr=0.1"),
    (["--model.net.norm=weight"], "model.net.norm=weight is not known"),
    (["--model.optimizer.lr=nan"], "model.optimizer.lr=nan"),
    (["--data.batch_size=0"], "data.batch_size=0"),
    (["--data.dataset=imagenet"], "data.dataset=imagenet is not known"),
    (["--trainer.max_epochs=ten"], "trainer.max_epochs=ten"),
    (["--seed_everything=-1"], "seed_everything=-1"),
    (["--trainer.logger=false"], "trainer.logger=False"),
    (["--config", "missing.yaml"], "--config=missing.yaml is not a file"),
    (["--nonsense=1"], "nonsense=1 is not a setting"),
    (["--data.data_dir=mine"], "data.data_dir=mine is not read by data.dataset=digits"),
    (["--trainer.logger.init_args.save_dir=a_file/logs"], "trainer.logger.save_dir=a_file/logs"),
]


@pytest.mark.parametrize("flags,named", LR_FIND_BAD, ids=[" ".join(f)[:40] for f, _ in LR_FIND_BAD])
def test_bad_lr_find_input_is_one_line_before_any_folder(tmp_path, capsys, flags, named):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as done:
        main(["lr-find", *flags])
    captured = capsys.readouterr()
    assert_one_line(done.value.code, captured.out, captured.err, named)
    assert not (tmp_path / "logs").exists()
