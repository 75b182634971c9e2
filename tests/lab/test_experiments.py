"""What an experiment of a study is (project/lab/experiments.py): names, settings, config files and
their joins, the flags a run gets in order, and each part checked before any run."""

import pytest

from project.errors import SettingError
from project.lab import experiments
from project.lab.experiments import DEFAULT, EXPERIMENT_DIR, Baseline


def test_parts_join_on_plus_but_not_inside_a_number():
    assert experiments.parts("opt_sgd+model.optimizer.init_args.lr=0.01") == ["opt_sgd", "model.optimizer.init_args.lr=0.01"]
    assert experiments.parts("penalty.l2=1e+3") == ["penalty.l2=1e+3"]
    assert experiments.parts("mine/drop.yaml+dropout") == ["mine/drop.yaml", "dropout"]


def test_a_run_gets_the_baseline_then_the_studys_flags_then_the_experiments_parts(tmp_path):
    """The experiment's own settings come last: a setting of a network that the study's flags chose
    (--model.net=Timm) is applied to that network, not to the baseline file's."""
    (tmp_path / "drop.yaml").write_text("model: {net: {init_args: {dropout: 0.5}}}\n")
    args = experiments.args("dropout+drop.yaml+model.net.init_args.drop_rate=0.5", DEFAULT, tmp_path,
                            ["--model.net=Timm"])
    assert args == ["--config", str(EXPERIMENT_DIR / "baseline.yaml"), "--model.net=Timm",
                    "--config", str(EXPERIMENT_DIR / "dropout.yaml"), "--config", str(tmp_path / "drop.yaml"),
                    "--model.net.init_args.drop_rate=0.5"]
    mine = Baseline(files=(str(tmp_path / "b.yaml"),), inline='{"data": {"train_size": 100}}', source="b.yaml")
    assert experiments.args("baseline", mine, tmp_path) == ["--config", str(tmp_path / "b.yaml"), "--config",
                                                             '{"data": {"train_size": 100}}']
    assert not mine.is_default and DEFAULT.is_default


@pytest.mark.parametrize("name,named", [
    ("nope", "--experiments=nope is not an experiment"),
    ("dropout+nope", "names 'nope', which is not an experiment"),
    ("missing.yaml", "is not a file"),
    ("list.yaml", "holds a YAML list"),
    ("=0.5", "a setting without a name"),
    ("", "is empty"),
])
def test_a_part_that_names_nothing_is_one_line(tmp_path, name, named):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SettingError) as error:
        experiments.check(name, "--experiments", tmp_path)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_known_parts_pass_and_name_their_settings(tmp_path):
    (tmp_path / "drop.yaml").write_text("model: {net: {init_args: {dropout: 0.5}}}\n")
    for name in ("baseline", "dropout", "drop.yaml", "model.net.init_args.width=0.5", "opt_sgd+penalty.l2=1e-3"):
        experiments.check(name, "--experiments", tmp_path)
    assert experiments.own_settings("drop.yaml+penalty.l2=0.001", tmp_path) == {"model/net/dropout": 0.5,
                                                                                "penalty/l2": 0.001}
    assert experiments.folder("mine/drop.yaml") == "mine_drop.yaml"
