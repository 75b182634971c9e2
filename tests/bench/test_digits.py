"""The default digits run's timed parts (project/bench/digits.py), on one epoch: each part measured
inside a real run, and the monitoring callbacks are configs/default.yaml's."""

import yaml

from project.bench import training
from project.bench.digits import digits_time_to_accuracy, digits_validation_time, monitoring_callbacks
from project.run.cli import DEFAULT_CONFIG


def test_the_clean_training_subsets_batches_are_timed_inside_a_real_run(tmp_path):
    per_epoch, timer = digits_validation_time(training.TINY, tmp_path, clean_train=True)
    assert per_epoch > 0 and 0 < timer.clean_batches < per_epoch and timer.epoch_end > 0
    _, off = digits_validation_time(training.TINY, tmp_path, clean_train=False)
    assert off.clean_batches == 0  # no clean subset: no batch of it timed


def test_the_monitoring_callbacks_are_the_default_configs():
    listed = {c["class_path"].rsplit(".", 1)[-1] for c in yaml.safe_load(DEFAULT_CONFIG.read_text())["trainer"]["callbacks"]}
    benched = {type(c).__name__ for c in monitoring_callbacks()}
    assert {"StepLearningRate", "Histograms", "GradientNorms", "Pictures"} <= benched & listed


def test_seconds_to_98_percent_through_the_real_cli(tmp_path):
    reached = digits_time_to_accuracy(training.TINY, tmp_path)  # one epoch of the default config
    assert reached["epochs"] == 1 and reached["fit_seconds"] > 0 and 0 < reached["best"] <= 1
    assert (reached["seconds_to_target"] is None) == (reached["best"] < 0.98)
