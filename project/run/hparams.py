"""TensorBoard's HParams and Custom Scalars tabs: a run's settings beside its final metrics.

A study (make compare, make search) passes the settings it varies as ``--hparams.varied``; they are
ticked and listed first. A run of its own ticks the settings it changed from the defaults.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from project.model.classifier import (
    BIAS,
    CLEAN_ACC,
    CLEAN_LOSS,
    GAP,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_ACC_BEST,
    VAL_LOSS,
    VARIANCE,
    WEIGHT_NORM,
    ZERO_FRACTION,
)
from project.run import report
from project.run.monitor import tensorboard_writer

# The metrics the hparams tab lists, in this order (TensorBoard ticks the first few).
HPARAM_METRICS = (TEST_ACC, VAL_ACC_BEST, GAP, TEST_LOSS, VAL_ACC, VAL_LOSS, CLEAN_ACC, TRAIN_ACC, BIAS, VARIANCE,
                  WEIGHT_NORM, ZERO_FRACTION)
RUN_KEY = "Run"  # the run's short name in the hparams tab
STUDY_KEY = "Experiment"  # in a study: the experiment (the trial ID already names the run)
# The settings of the trainer and the penalty the tab shows (the model's and data's are all shown).
TRAINER_KEYS = ("precision", "max_epochs", "accumulate_grad_batches")
PENALTY_KEYS = ("l1", "l2")


def _exactly(*tags: str) -> list[str]:
    return [f"^{tag}$" for tag in tags]


# The custom scalars tab: the curves that show overfitting on one chart each.
CHART_LAYOUT = {
    "Overfitting": {
        "accuracy: clean train, running train, validation": ["Multiline", _exactly(CLEAN_ACC, TRAIN_ACC, VAL_ACC)],
        "loss: clean train, running train, validation": ["Multiline", _exactly(CLEAN_LOSS, TRAIN_LOSS, VAL_LOSS)],
        "gap, bias, variance": ["Multiline", _exactly(GAP, BIAS, VARIANCE)],
        "learning rate": ["Multiline", ["^lr-"]],
    },
}


class HParams(Callback):
    """Fills TensorBoard's hparams tab with the run's configuration and its final metrics, and
    writes the custom scalars layout (train and validation on one chart).

    The session is written once, at fit start, declaring the metric tags; TensorBoard then shows
    each tag's latest value, so the table fills in as the run goes (test/acc after the test).
    TensorBoard lists first the settings marked as differing, then the rest, each group by name,
    and ticks the first few: marked are the run's short name (``Run``: the logger's name/version,
    the same wherever TensorBoard is served from; capitalized, it sorts first) and either the
    settings a study varies or, for a run of its own, the settings it changed from the defaults.
    Set ``trainer.enable_autolog_hparams: false`` so Lightning does not write a second session.
    """

    def __init__(self, layout: bool = True, varied: list[str] | None = None):
        """
        Args:
            layout: write the custom scalars layout (the Custom Scalars tab).
            varied: the settings a study varies, as hparams keys (model/net/dropout) or config keys
                (model.net.init_args.dropout): ticked and listed first. make compare and make
                search set it; null: the settings this run changed from the defaults.
        """
        self.layout = layout
        self.varied = [k.replace(".init_args.", ".").replace(".", "/") if "/" not in k else k for k in varied or []]
        self.defaults: dict[str, object] = {}  # the default configuration's values, flattened (set by the CLI)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        if self.layout:
            writer.add_custom_scalars(CHART_LAYOUT)
        settings = run_configuration(trainer, pl_module)
        if self.varied:  # a study: its experiment and what it varies, so the metrics fit beside them
            params = {STUDY_KEY: study_label(trainer), **{k: settings.get(k) for k in self.varied}}
            marked = set(params)
        else:  # alone: every setting, the ones changed from the defaults ticked
            params = {RUN_KEY: run_name(trainer), **settings}
            marked = {RUN_KEY, *(k for k, v in params.items() if k in self.defaults and self.defaults[k] != v)}
        for summary in hparams_summaries(params, HPARAM_METRICS, marked):
            writer.file_writer.add_summary(summary)


def run_name(trainer: Trainer) -> str:
    """``dropout/seed_1``, ``trial_0003``, ``default/version_0``: short and distinct within a study."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    if logger is None:
        return ""
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return f"{logger.name}/{version}" if logger.name else version


def study_label(trainer: Trainer) -> str:
    """A study's row label: the experiment of a make compare run (``batchnorm`` of
    ``batchnorm/seed_0``: its seed has a column of its own), the trial of a search (``trial_0003``)."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    if logger is None:
        return ""
    if not str(logger.version).startswith("seed_"):
        return str(logger.version)
    setting, _, value = logger.name.partition("=")  # a sweep's point: width=0.25, not model.net.init_args.width=0.25
    return f"{setting.rsplit('.', 1)[-1]}={value}" if value else logger.name


def hparams_summaries(params: dict[str, object], metrics: tuple[str, ...], marked: set[str]) -> list:
    """torch's ``hparams`` summaries, with the settings in ``marked`` flagged as differing (TensorBoard
    lists those first) and the metrics in the given order."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    # Integers as text: TensorBoard prints every number with four decimals (seed 0.0000).
    params = {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in params.items()}
    experiment, start, end = hparams(params, {tag: 0.0 for tag in metrics})
    data = plugin_data_pb2.HParamsPluginData.FromString(experiment.value[0].metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in marked
    ordered = sorted(data.experiment.hparam_infos, key=lambda info: (not info.differs, info.name))
    data.experiment.ClearField("hparam_infos")
    data.experiment.hparam_infos.extend(ordered)
    experiment.value[0].metadata.plugin_data.content = data.SerializeToString()
    return [experiment, start, end]


def readable(value) -> object:
    """An hparams value as a person reads it: true/false, [32, 64, 128], random_crop(padding=1)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(readable(v)) for v in value) + "]" if not any(
            isinstance(v, dict) and "name" in v for v in value) else ", ".join(str(readable(v)) for v in value)
    if isinstance(value, dict) and "name" in value:  # an augmentation step
        settings = ", ".join(f"{k}={readable(v)}" for k, v in value.items() if k != "name")
        return f"{value['name']}({settings})"
    if isinstance(value, dict) and "class_path" in value:
        return str(value["class_path"]).rsplit(".", 1)[-1]
    return str(value)


def run_configuration(trainer: Trainer, pl_module: LightningModule) -> dict[str, object]:
    """The settings that tell runs apart, flattened to readable scalar values for the hparams tab."""
    penalty = next((vars(c) for c in trainer.callbacks if all(hasattr(c, k) for k in PENALTY_KEYS)), {})
    data = dict(trainer.datamodule.hparams) if trainer.datamodule is not None else {}
    if trainer.datamodule is not None:  # what one step averages over, whatever the process count
        data["batch_size_effective"] = report.effective_batch(trainer.datamodule, trainer)["effective"]
    return tab_settings(dict(pl_module.hparams), data, penalty, {k: getattr(trainer, k) for k in TRAINER_KEYS})


def tab_settings(model: dict, data: dict, penalty: dict, trainer: dict) -> dict[str, object]:
    """The settings the tab shows, flattened: the model's and data's, and a few of the penalty's and trainer's.
    The CLI passes the defaults through here too, so a run and its defaults compare key by key."""
    trainer = {k: str(trainer.get(k)) if k == "precision" else trainer.get(k) for k in TRAINER_KEYS}
    return flatten_settings({"model": model or {}, "data": data or {},
                             "penalty": {k: (penalty or {}).get(k) for k in PENALTY_KEYS}, "trainer": trainer})


def flatten_settings(config: dict) -> dict[str, object]:
    """``{"model": {"net": {"class_path": ..., "init_args": {"dropout": 0.1}}}}`` as
    ``{"model/net": "ConvNet", "model/net/dropout": 0.1}``: readable scalars, keys without init_args."""
    flat: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and not ("name" in value and prefix.endswith("augment")):
            if "class_path" in value:
                flat[prefix] = readable(value)
            for key, inner in value.items():
                if key == "class_path" or str(key).startswith("_"):
                    continue
                walk(prefix if key == "init_args" else f"{prefix}/{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = readable(value)

    walk("", config)
    return flat


STUDY_MEANS = "mean_of_seeds"  # the study's own TensorBoard folder, beside its runs/


def write_study_views(study_dir: Path, results: list[dict]) -> Path:
    """A study's Custom Scalars tab: one chart per experiment, its clean-train and validation accuracy
    averaged over its seeds (two lines, not one line per run of the study), in the study's folder
    ``mean_of_seeds/``: a TensorBoard of its own (``tensorboard --logdir .../mean_of_seeds``), since
    TensorBoard selects only some of a logdir's runs when it holds a hundred. Rewritten whole at
    every report."""
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(study_dir) / STUDY_MEANS
    shutil.rmtree(folder, ignore_errors=True)
    experiments = list(dict.fromkeys(r["experiment"] for r in results if r["status"] == "ok"))
    # Two runs, so the two lines get two colors: clean_train and validation, one tag per experiment.
    writers = {key: SummaryWriter(str(folder / run)) for key, run in (("train_acc_curve", "clean_train"),
                                                                       ("val_acc_curve", "validation"))}
    layout = {}
    try:
        for name in experiments:
            runs = [r for r in results if r["experiment"] == name and r["status"] == "ok"]
            every = runs[0].get("val_every", 1)  # epochs between the runs' validations
            for key, writer in writers.items():
                longest = max(len(r[key]) for r in runs)
                for k in range(longest):  # the runs still going at that point (early stopping ends some)
                    values = [r[key][k] for r in runs if len(r[key]) > k]
                    writer.add_scalar(f"{name}/accuracy", sum(values) / len(values), every * (k + 1) - 1)
            layout[f"{name} ({len(runs)} seeds)"] = ["Multiline", [f"^{re.escape(name)}/accuracy$"]]
        writers["train_acc_curve"].add_custom_scalars(
            {"study: clean train vs validation accuracy, mean of seeds": layout})
    finally:
        for writer in writers.values():
            writer.close()
    return folder
