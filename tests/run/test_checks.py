"""Settings checked before any work: the rules on a parsed configuration and config files.
(tests/test_bad_inputs.py runs the whole command line on 150+ bad inputs.)"""


import pytest
from jsonargparse import Namespace

from project.errors import SettingError
from project.run.checks import check_config_files, check_settings, number_in


def config(**parts) -> Namespace:
    return Namespace(seed_everything=0, trainer=Namespace(**parts.get("trainer", {})),
                     data=Namespace(**parts.get("data", {})), model=Namespace(**parts.get("model", {})))


def test_a_good_configuration_passes_and_each_rule_names_its_setting():
    check_settings(config(trainer={"max_epochs": 3, "devices": "auto"}), "fit")
    with pytest.raises(SettingError, match=r"^trainer.accumulate_grad_batches=0; allowed: an integer >= 1$"):
        check_settings(config(trainer={"accumulate_grad_batches": 0}), "fit")
    with pytest.raises(SettingError, match=r"^trainer.devices=0; allowed: auto, a number of devices >= 1"):
        check_settings(config(trainer={"devices": 0}), "fit")
    scheduler = Namespace(class_path="torch.optim.lr_scheduler.StepLR", init_args=Namespace(step_size=0))
    with pytest.raises(SettingError, match=r"^model.scheduler.step_size=0; allowed: an integer >= 1$"):
        check_settings(config(model={"scheduler": scheduler}), "fit")


def test_a_monitor_must_be_a_metric_the_model_logs():
    stopper = Namespace(class_path="lightning.pytorch.callbacks.EarlyStopping",
                        init_args=Namespace(monitor="val/accuracy", mode="max"))
    cfg = config()
    cfg.early_stopping = stopper
    with pytest.raises(SettingError, match=r"^early_stopping.monitor=val/accuracy is not a metric the model logs "
                                           r"\(did you mean val/acc\?\)"):
        check_settings(cfg, "fit")


def test_rule_texts():
    assert number_in(0, 1, low_open=True)[1] == "a number in (0, 1]"
    assert number_in(0, float("inf"))[1] == "a finite number >= 0"
    assert number_in(float("-inf"), float("inf"))[1] == "a finite number"


def test_config_files_are_readable_mappings(tmp_path):
    (tmp_path / "ok.yaml").write_text("trainer: {max_epochs: 2}\n")
    (tmp_path / "list.yaml").write_text("- a\n")
    check_config_files(["fit", "--config", str(tmp_path / "ok.yaml"), "--config={trainer: {max_epochs: 1}}"])
    with pytest.raises(SettingError, match="holds a YAML list, not a mapping"):
        check_config_files(["fit", f"--config={tmp_path / 'list.yaml'}"])
