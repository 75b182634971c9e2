"""A study's runs as configurations (project/lab/configs.py): what a seed varies, each run's flags in
order, every experiment parsed before any run (a mistake named with its experiment and baseline),
and what the page says of a baseline: its own settings and those it keeps from configs/default.yaml."""

from pathlib import Path

import pytest

from project.errors import SettingError
from project.lab.configs import check_configs, describe, run_args, seed_args, varied_settings
from project.lab.experiments import DEFAULT, Baseline

TINY = ["--trainer.max_epochs=1", "--data.train_size=100", "--data.dataset=digits"]


def test_a_seed_varies_the_data_the_init_or_both():
    assert seed_args(3, "both") == ["--seed_everything=3", "--data.seed=3"]
    assert seed_args(3, "data") == ["--seed_everything=0", "--data.seed=3"]
    assert seed_args(3, "init") == ["--seed_everything=3", "--data.seed=0"]
    assert seed_args(3, "both", data_seed=False) == ["--seed_everything=3"]


def test_a_runs_flags_name_its_folder_and_skip_the_sanity_check(tmp_path):
    args = run_args("mine/drop.yaml", 2, "both", tmp_path, ["--trainer.max_epochs=1"], root=tmp_path)
    assert args[0] == "fit" and args.index("--trainer.max_epochs=1") < args.index(str(tmp_path / "mine" / "drop.yaml"))
    assert "--trainer.logger.init_args.name=mine_drop.yaml" in args and "--trainer.logger.init_args.version=seed_2" in args
    assert "--trainer.num_sanity_val_steps=0" in args  # the dry run has checked the network on a batch already


def test_a_mistake_is_named_with_its_experiment_and_baseline(tmp_path):
    (tmp_path / "mine.yaml").write_text("model:\n  net:\n    class_path: MLP\n")
    mine = Baseline(files=(str(tmp_path / "mine.yaml"),), source="mine.yaml")
    with pytest.raises(SettingError, match=r"model.net.width=.* in experiment model.net.init_args.width=0.5 on the "
                                           r"baseline mine.yaml"):
        check_configs(["model.net.init_args.width=0.5"], TINY, "both", read_data=False, baseline=mine, root=tmp_path)


def test_the_page_says_what_a_baseline_sets_and_what_it_keeps():
    parsed = check_configs(["baseline"], TINY, "both", read_data=False)
    assert parsed.baseline["data/train_size"] == 100 and parsed.seeded == {"baseline": True}
    said = describe(DEFAULT, parsed.baseline)
    assert said["source"] == "configs/experiment/baseline.yaml"
    assert said["settings"]["model/net/widths"] == "[16, 32, 64]"  # the file's own, as the hparams tab shows it
    assert said["carried"]["data/batch_size"] == 64 and said["carried"]["model/net/activation"] == "relu"
    assert "model/net/widths" not in said["carried"]  # set by the baseline: not kept from the default


def test_a_baseline_that_changes_the_network_keeps_none_of_the_defaults_settings(tmp_path):
    (tmp_path / "mlp.yaml").write_text("model:\n  net:\n    class_path: project.model.nn.MLP\n    init_args:\n"
                                       "      hidden: [32]\n")
    mine = Baseline(files=(str(tmp_path / "mlp.yaml"),), source="mlp.yaml")
    parsed = check_configs(["baseline"], TINY, "both", read_data=False, baseline=mine, root=tmp_path)
    said = describe(mine, parsed.baseline)
    assert said["settings"] == {"model/net": "MLP", "model/net/hidden": "[32]"}
    assert not any(k.startswith("model/net/") for k in said["carried"])  # ConvNet's widths and init are gone
    assert said["carried"]["data/dataset"] == "digits"


def test_the_hparams_tab_ticks_what_the_experiments_change(tmp_path):
    (tmp_path / "drop.yaml").write_text("model: {net: {init_args: {dropout: 0.5}}}\ntrainer: {max_epochs: 3}\n")
    assert varied_settings(["drop.yaml+penalty.l2=0.01", "baseline"], "both", tmp_path) == [
        "data/seed", "model/net/dropout", "penalty/l2"]
    assert varied_settings(["trainer.max_epochs=5"], "init", Path.cwd()) == ["trainer/max_epochs"]
