"""The command line: Lightning's CLI with our default config, linked arguments, and the order of work.

``project fit`` checks every setting, builds the model, data module and trainer, reads the data,
trains, then tests the best checkpoint and prints the run summary; ``validate``, ``test`` and
``predict`` are Lightning's own; ``lr-find`` is the learning-rate range test. Every setting is a
flag or a YAML key (``project fit --print_config`` shows them all). What each step does lives in
its own module: checks.py, checkpoints.py, devices.py, report.py, lr_find.py.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Literal

import torch
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from project.data.datamodule import ImageDataModule
from project.devices import PeerLost, fall_back_to_fp16, global_rank, leave_process_group, lost_peer, peer_lost
from project.errors import SettingError, class_name, constructor_error, one_line_parse_error, stop
from project.model.callbacks import NonFiniteLossError, WeightPenalty
from project.model.classifier import TEST_METRICS, ImageClassifier
from project.run import checks, lr_find, net_settings, own_data, paths, report
from project.run.checkpoints import (
    CheckpointError,
    CheckpointOnInterrupt,
    CheckpointWriteError,
    LastCheckpoint,
    as_plain,
    check_matches,
    checkpoint_metrics,
    last_saved,
    load_resume,
)
from project.run.dry_run import dry_run
from project.run.env import env_flags
from project.run.hparams import HParams, tab_settings
from project.run.progress import EpochRichProgressBar, PlainProgressBar, held_lightning_logs, quiet_lightning
from project.run.stopping import RunInterrupted, restarted, stop_on_sigterm

# DDP's worker processes re-run this command line; a seed drawn for seed_everything: true reaches
# them through the environment, the only thing the launcher passes on ("<parent pid>:<seed>").
RANDOM_SEED_ENV = "PROJECT_RANDOM_SEED"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


class OneLineErrorParser(LightningArgumentParser):
    """Reports a bad setting as one line, without jsonargparse's usage, tip and nested union report,
    and exits with argparse's code 2."""

    def print_usage(self, file=None) -> None:
        pass

    def parse_args(self, args=None, *rest, **kwargs):
        self.given = list(sys.argv[1:] if args is None else args)  # to quote a flag's value in an error
        checks.check_config_files(self.given)  # every entry point's --config files: one line naming a bad one
        return super().parse_args(args, *rest, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # a parse inside a parse: the outer one reports
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        known = [k.lstrip("-") for k in parser._option_string_actions]
        stop(one_line_parse_error(message, known, getattr(self, "given", sys.argv[1:])))


class ProjectCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("parser_class", OneLineErrorParser)
        # The model has its own optimizer and scheduler keys; Lightning's top-level --optimizer and
        # --lr_scheduler would replace them with only a warning.
        kwargs.setdefault("auto_configure_optimizers", False)
        # PL_FIT__TRAINER__MAX_EPOCHS=5 is --trainer.max_epochs=5 for `project fit`.
        defaults = {"default_env": True}
        if DEFAULT_CONFIG.exists():
            defaults["default_config_files"] = [str(DEFAULT_CONFIG)]
        given = kwargs.get("args") if kwargs.get("args") is not None else sys.argv[1:]
        self._asked = given[0] if given and isinstance(given, list) and given[0] in SUBCOMMANDS else None
        kwargs.setdefault("parser_kwargs", {"default_env": True, **{cmd: defaults for cmd in self.subcommands()}}
                          if kwargs.get("run", True) else defaults)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self._started = time.perf_counter()
        self.resume = None
        self.notes: list[str] = []  # printed after every check passed, so an error is the only line
        self.random_seed: int | None = None
        quiet_lightning()
        try:
            # data: any LightningDataModule with num_classes and input_shape (ImageDataModule by default)
            super().__init__(ImageClassifier, LightningDataModule, *args, subclass_mode_data=True, **kwargs)
        except (SystemExit, KeyboardInterrupt) as err:
            # Lightning exits 0 on SIGTERM and 1 on Ctrl-C: a stopped run must not look finished.
            trainer = getattr(self, "trainer", None)
            guard = next((c for c in getattr(trainer, "callbacks", [])
                          if isinstance(c, CheckpointOnInterrupt) and c.interrupted), None)
            if guard is None:
                if isinstance(err, KeyboardInterrupt):
                    raise RunInterrupted(signal.SIGINT, None) from None
                raise
            signum, saved = guard.interrupted
            if self.subcommand == "fit" and trainer.state.fn == "test":  # the test after fit: training is saved
                last = next((c.last_model_path for c in trainer.callbacks if isinstance(c, LastCheckpoint)), "")
                raise RunInterrupted(signum, last or None, in_test=True) from None
            raise RunInterrupted(signum, saved) from None
        except RuntimeError as err:
            if not lost_peer(err):
                raise
            raise peer_lost(err, last_saved(getattr(self, "trainer", None))) from None

    def subcommands(self) -> dict:
        """The parser of the subcommand asked for alone: each of the others costs 0.15 s of start-up."""
        every = LightningCLI.subcommands()
        return {self._asked: every[self._asked]} if self._asked in every else every

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, test and print the run summary")
        parser.add_argument("--test_ckpt", type=Literal["best", "last"], default="best",
                            help="test the best checkpoint (by val/loss) or the weights training ended with")
        # The callbacks experiments and studies change most get their own keys: --penalty.l2=1e-3,
        # --early_stopping.patience=3 (or early_stopping: null), --hparams.varied=[...].
        parser.add_lightning_class_args(EarlyStopping, "early_stopping", subclass_mode=True, required=False)
        parser.add_lightning_class_args(WeightPenalty, "penalty")
        parser.add_lightning_class_args(HParams, "hparams")
        # The model learns the data's shape and classes; the user never repeats them.
        parser.link_arguments("data", "model.num_classes", own_data.num_classes_of, apply_on="instantiate")
        parser.link_arguments("data", "model.input_shape", own_data.input_shape_of, apply_on="instantiate")
        net_settings.install(parser)

    def _subcommand_config(self):
        return self.config.get(self.subcommand) if self.subcommand else self.config

    # Private override: Lightning's own loads the file unchecked and lets the checkpoint's model
    # settings silently replace the user's flags; no public hook runs before it.
    def _parse_ckpt_path(self) -> None:
        """Every --ckpt_path (a file or ``last``, in fit/validate/test/predict) is read safely and
        checked here, before anything runs."""
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else None
        if subcommand == "fit" and config and not config.get("ckpt_path") and restarted():
            config.ckpt_path = "last"  # a restarted job continues its own run, with no flag to add
            self.notes.append(f"note: {restarted()}: resuming from the newest checkpoint of the run (--ckpt_path last)")
        if not config or not config.get("ckpt_path"):
            return
        save_dir, name, _ = paths.logger_settings(config)
        try:
            resume = load_resume(config.ckpt_path, save_dir, name)
        except CheckpointError as err:
            stop(err)
        conflicts = resume.conflicts(as_plain(config), as_plain(self._subcommand_parsers[subcommand].get_defaults()))
        if conflicts:
            stop(SettingError("ckpt_path", resume.path, "no such flags, or a checkpoint saved with them",
                              f"was saved with other settings: {'; '.join(conflicts)}"))
        saved = resume.model_settings
        if saved:  # the checkpoint's network where the user set none (it cannot load into another)
            configured = as_plain(config.get("model", {})).get("net")
            if configured != as_plain(saved).get("net"):  # said once every check has passed
                self.notes.append(f"note: model.net is the checkpoint's {_net_name(saved.get('net'))} with its saved "
                                  f"settings, not the configured {_net_name(configured)}")
            try:
                self.config = self.parser.parse_object({subcommand: {"model": saved}}, self.config)
            except SystemExit:
                stop(SettingError("ckpt_path", resume.path, "a checkpoint of this version",
                                  f"holds model settings {saved} that this version cannot read"))
        self.config[subcommand].ckpt_path = str(resume.path)
        self.resume = resume

    # Private override: Lightning's logs "Seed set to N" before any setting is checked (so a bad
    # setting's line is not the only one) and seeds 0, not a random seed, for seed_everything: true.
    def _set_seed(self) -> None:
        """Every setting is checked first; then the seed is set, quietly. ``seed_everything: true``
        draws a random seed, shared with the DDP processes this one starts, and recorded in the
        config saved with the run."""
        config = self._subcommand_config()
        try:
            checks.check_settings(config, self.subcommand)
        except SettingError as err:
            stop(err)
        seed = config.get("seed_everything")
        if seed is False:
            return
        if seed is True:
            parent, _, drawn = os.environ.get(RANDOM_SEED_ENV, "").partition(":")
            seed = int(drawn) if parent == str(os.getppid()) else random.SystemRandom().randint(0, checks.MAX_SEED)
            os.environ[RANDOM_SEED_ENV] = f"{os.getpid()}:{seed}"
            self.random_seed = seed
        config["seed_everything"] = seed_everything(seed, workers=True, verbose=False)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else None
        if not config:
            return
        fall_back_to_fp16(config.trainer)
        save_dir, name, logger = paths.logger_settings(config)
        resume = self.resume
        if self.subcommand == "fit":
            if resume is not None:
                finished = resume.finished(config.trainer.get("max_epochs"), config.trainer.get("max_steps"))
                untested = (resume.run_folder is not None and config.get("test_after_fit", True)
                            and not (resume.run_folder / report.SUMMARY_FILE).exists())
                if finished and untested:  # stopped during its test after fit: the test runs now
                    self.notes.append(f"{resume.path}: training finished, its test after fit did not; testing now")
                elif finished:
                    print(finished, flush=True)
                    sys.exit(0)
                else:
                    done = resume.epochs_done
                    self.notes.append(f"resuming from {resume.path} (after {done} epoch{'s' * (done != 1)}, step "
                                      f"{resume.checkpoint.get('global_step', 0)})")
            # --ckpt_path last (or a path in a run folder of this logger) continues that run in its own folder.
            folder = resume.run_folder if resume else None
            if folder and logger is not None and folder.parent.resolve() == (Path(save_dir) / name).resolve():
                logger.version = folder.name
                # Lightning warns that the checkpoint folder is not empty: here that is the point
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
                if self.notes:
                    self.notes[-1] += f", in its own folder {folder}: its checkpoints stay, the next ones join them"
        elif logger is not None:
            # validate/test/predict write beside the run they evaluate (version_N/<subcommand>/), or
            # under <name>-<subcommand>/, never as a new run folder of fit's.
            if resume and resume.run_folder:
                logger.save_dir, logger.name = str(resume.run_folder.parent.parent), resume.run_folder.parent.name
                logger.version = f"{resume.run_folder.name}/{self.subcommand}"
            else:
                logger.name = f"{name}-{self.subcommand}"

    def instantiate_classes(self) -> None:
        # Constructors validate their settings; a bad value stops here, before any data is read
        # or any log folder is made, with one line and argparse's exit code. Lightning's start-up
        # lines (GPU available ...) are held back until every check passed.
        with held_lightning_logs():
            try:
                super().instantiate_classes()
                if self.resume:
                    check_matches(self.resume.checkpoint, self.model, self.resume.path)
                checks.check_built(self.model, self.datamodule, self.trainer, self.subcommand)
                self.notes += getattr(self.model.net, "notes", [])  # a library network's (project/model/zoo.py)
                if self.subcommand is not None and isinstance(self.datamodule, ImageDataModule):
                    self.datamodule.setup()  # the data is read and checked here, before any log folder exists
                    dm = self.datamodule
                    self.notes += getattr(dm, "notes", [])
                    dry_run(self.model, dm.prepare(dm.train_set.head(2)), torch.as_tensor(dm.train_set.labels[:2]).long())
                    if self.subcommand == "fit":
                        checks.check_with_data(self.model, self.datamodule, self.trainer)
                elif self.subcommand is not None and self.trainer.is_global_zero:  # a data module of one's own
                    own_data.check(self.datamodule, self.model, self.trainer, self.subcommand,
                                   self._subcommand_config().get("test_after_fit", True))
                if self.subcommand is not None:  # last: it makes the log folder
                    for logger in self.trainer.loggers:
                        paths.check_writable(Path(logger.save_dir or "."))
            except SettingError as err:
                stop(err)
            except ImportError as err:  # an accelerator, strategy or precision whose package is missing
                trainer = self._subcommand_config().trainer
                stop(SettingError("trainer.strategy", trainer.get("strategy"), "auto, or install that package",
                                  f"with trainer.accelerator={trainer.get('accelerator')} and trainer.precision="
                                  f"{trainer.get('precision')} needs a package that is missing ({err})"))
            except Exception as err:
                known = own_data.construction_error(err)  # a link's check, a constructor of the user's own
                if known:
                    stop(known)
                if isinstance(err, (ValueError, TypeError, MisconfigurationException)):
                    stop(constructor_error(str(err)))
                raise
        trainer = getattr(self, "trainer", None)
        for note in self.notes if trainer is None or trainer.is_global_zero else ():  # each rank checks; one says
            print(note, file=sys.stderr, flush=True)
        if self.subcommand is not None:
            defaults = as_plain(self._subcommand_parsers[self.subcommand].get_defaults())
            for callback in self.trainer.callbacks:
                if isinstance(callback, HParams):
                    callback.defaults = tab_settings(defaults.get("model"), defaults.get("data"),
                                                     defaults.get("penalty"), defaults.get("trainer") or {})
        if self.subcommand is not None and not isinstance(self.datamodule, ImageDataModule) and self.trainer.is_global_zero:
            print(f"note: data={type(self.datamodule).__name__} is not a project.data.ImageDataModule: what needs its "
                  "clean training subset (train/acc_clean, gap/acc, bias, variance, the diagnosis), its augmentation "
                  "pictures, activation histograms and the predictions CSV steps aside; the rest runs as usual",
                  file=sys.stderr, flush=True)
        if self.random_seed is not None and self.trainer.is_global_zero:
            print(f"seed_everything: true drew seed {self.random_seed} (saved in the run's config.yaml; "
                  f"--seed_everything={self.random_seed} repeats it)", file=sys.stderr, flush=True)

    # Private override: the callbacks built from the config arrive here together with the trainer's
    # settings; the public instantiate_trainer sees neither the built callbacks nor can drop a None.
    def _instantiate_trainer(self, config: dict, callbacks: list):
        callbacks = [c for c in callbacks if c is not None]  # early_stopping: null
        if config.get("enable_checkpointing") is False:  # the default config's checkpoint callbacks step aside
            config["callbacks"] = [c for c in config.get("callbacks") or [] if not isinstance(c, Checkpoint)]
        # Rich's live bar on a terminal; one plain line per epoch in CI logs and files.
        has_bar = any(isinstance(c, ProgressBar) for c in [*callbacks, *(config.get("callbacks") or [])])
        if config.get("enable_progress_bar", True) is not False and not has_bar:
            callbacks = [*callbacks, EpochRichProgressBar() if sys.stdout.isatty() else PlainProgressBar()]
        trainer = super()._instantiate_trainer(config, callbacks)
        # Callbacks run in list order: the penalty adds its gradient before the gradient monitors
        # (histograms, grad norms) look, so they show what the optimizer applies.
        trainer.callbacks.sort(key=lambda c: not isinstance(c, WeightPenalty))
        return trainer

    def after_fit(self) -> None:
        config = self.config_init[self.subcommand]
        if not config.get("test_after_fit", True):
            return
        fit_metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        best = getattr(self.trainer.checkpoint_callback, "best_model_path", "") or None
        tested = best if config.get("test_ckpt", "best") == "best" else None
        # The figures of the weights that are tested: the best checkpoint's own (saved with it), or
        # the final epoch's.
        weights = checkpoint_metrics(tested) if tested else {"epoch": self.trainer.current_epoch, **fit_metrics}
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=tested, verbose=False, weights_only=True)
        self.test_metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k in TEST_METRICS}
        self.fit_metrics = {**fit_metrics, **self.test_metrics}  # the run's last logged values
        self.tested_metrics = weights
        # A collective under DDP: every rank asks. Without a logger nothing is written (Lightning's
        # log_dir would then be the working directory).
        log_dir = self.trainer.log_dir if self.trainer.loggers else None
        if self.trainer.is_global_zero:
            seconds = time.perf_counter() - self._started
            batch = report.effective_batch(self.datamodule, self.trainer)
            if log_dir:
                report.write_summary(Path(log_dir), tested, best, self.trainer.current_epoch, weights,
                                     self.test_metrics, seconds, batch)
            print(report.run_summary(self.trainer.current_epoch, self.model.hparams.human_accuracy,
                                     self.model.hparams.diagnosis_tolerance, log_dir, weights, self.test_metrics,
                                     best, tested, seconds, batch), flush=True)

    def after_predict(self) -> None:
        trainer, dm, predictions = self.trainer, self.datamodule, self.trainer.predict_loop.predictions
        # rank 0 writes them, where there is a log folder, with our data module's labels and class names
        if trainer.is_global_zero and predictions and trainer.loggers and trainer.log_dir is not None \
                and isinstance(dm, ImageDataModule):
            path = Path(trainer.log_dir) / f"predictions_{dm.hparams.predict_split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            report.write_predictions(path, torch.cat([p.float().cpu() for p in predictions]), dm.predict_set.labels,
                                     dm.class_names)
            print(f"predictions for the {len(dm.predict_set)} {dm.hparams.predict_split} images written to {path}",
                  flush=True)


def _net_name(net) -> str:  # a config's network, as errors.class_name names a class
    return class_name(str(net.get("class_path", net)) if isinstance(net, dict) else str(net))


def main(args: list[str] | None = None) -> None:
    given = sys.argv[1:] if args is None else args
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        if given[:1] == ["prepare"]:  # data.stream's conversion alone (project/data/stream.py)
            from project.data.stream import prepare_command

            sys.argv = sys.argv[:1]
            own_data.check_preparable(given[1:])
            quiet_lightning(logging.WARNING)  # no Trainer runs: its start-up lines would only stand before an error
            cli = ProjectCLI(args=[*given[1:], "--data.stream=true", "--trainer.logger=false"], run=False)
            print(prepare_command(cli.datamodule), flush=True)
        elif given[:1] == ["lr-find"]:
            own, rest = lr_find.parse(given[1:])
            sys.argv = sys.argv[:1]  # the flags are passed as args; Lightning warns when it sees both
            with held_lightning_logs():  # the data and network are checked first, as fit checks them
                cli = ProjectCLI(args=[*rest, "--trainer.enable_model_summary=false"], run=False)
                lr_find.check(cli.trainer, cli.model, cli.datamodule)
            lr_find.run(cli.trainer, cli.model, cli.datamodule, own)
        else:
            flags = env_flags(given[0]) if given[:1] and given[0] in SUBCOMMANDS else []
            if flags and args is None:  # into sys.argv itself: DDP relaunches the other ranks from it
                sys.argv[2:2] = flags
            ProjectCLI(args=[*given[:1], *flags, *given[1:]] if flags and args is not None else args)
    except SettingError as err:
        stop(err)
    except (NonFiniteLossError, CheckpointWriteError) as err:
        stop(err, code=1)  # the run failed; what it saved stays
    except PeerLost as err:
        print(err.line(), file=sys.stderr, flush=True)
        os._exit(1)  # the process group is broken: leaving it (or gloo's threads at exit) can hang
    except (RunInterrupted, KeyboardInterrupt) as err:
        err = err if isinstance(err, RunInterrupted) else RunInterrupted(signal.SIGINT, None)
        if global_rank() == 0:  # every rank stops; one says so
            print(err.line(), file=sys.stderr, flush=True)
        sys.exit(128 + err.signum)
    finally:
        signal.signal(signal.SIGTERM, previous)
        leave_process_group()


if __name__ == "__main__":
    main()
