"""The hparams tab: what a run changed, or what a study varies, ticked first, with readable values."""

from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from project.run.hparams import HParams, flatten_settings, readable


def _marked(events) -> tuple[list[str], list[str]]:
    experiment = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    return [info.name for info in experiment.hparam_infos if info.differs], [info.name for info in experiment.hparam_infos]


def test_hparams_list_first_what_a_run_changed_and_show_values_readably(tensorboard_run):
    hparams = HParams()
    hparams.defaults = {"data/batch_size": 64, "data/augment": "random_crop(padding=1)", "data/download": "true"}
    events, _, _ = tensorboard_run([hparams], epochs=1)
    differing, names = _marked(events)
    # batch_size 32 and augment (null here) differ from the defaults given; download does not
    assert differing == ["Run", "data/augment", "data/batch_size"] and names[:3] == differing
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["data/download"].string_value == "true" and values["data/augment"].string_value == "null"
    assert readable([{"name": "random_crop", "padding": 1}, "hflip"]) == "random_crop(padding=1), hflip"
    assert readable((0.9, 0.999)) == "[0.9, 0.999]" and readable(False) == "false"
    assert flatten_settings({"net": {"class_path": "project.model.nn.ConvNet", "init_args": {"widths": [32, 64]}}}) == \
        {"net": "ConvNet", "net/widths": "[32, 64]"}


def test_a_study_marks_what_it_varies_not_what_its_baseline_changed(tensorboard_run):
    hparams = HParams(varied=["model.label_smoothing", "data/seed"])
    hparams.defaults = {"data/batch_size": 64}
    events, _, _ = tensorboard_run([hparams], epochs=1)
    marked, names = _marked(events)
    # only the experiment and what the study varies, so the metrics sit beside them without scrolling
    assert marked == names == ["Experiment", "data/seed", "model/label_smoothing"]
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["data/seed"].string_value.isdigit()  # a seed as an integer, not 0.0000
