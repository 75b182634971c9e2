"""A study across machines: ``make compare ... STORAGE=postgresql://... NAME=n`` started on any number
of machines joins one study, kept in Optuna's storage.

Each run of the study, one (experiment, seed), is a trial of an Optuna study named ``lab/<NAME>``:
queued as a WAITING trial, taken by a worker under the storage's own compare-and-set on the trial's
state (what ``study.ask()`` does to pop Optuna's queue), run as any run of the lab is, and told
COMPLETE with its figures (everything result.json holds, and the machine that ran it) as the trial's
user attributes. Nothing of our own locks or beats: a running trial records Optuna's heartbeat; a
worker killed with SIGKILL stops beating, the next worker to look marks its trial FAIL and Optuna's
retry callback queues it again. SIGTERM or Ctrl-C marks the running trial FAIL and queues it again
at once. A run queued twice (two workers topping up the same round) runs once: of the trials of
one run, only the first that is not FAIL is run. With ``--until-decided``, whichever worker finds
a look's runs finished queues the next look's (project.lab.decide replays the plan on the results
in the storage), and the worker that finds nothing left writes the report, as ``--report`` does on
any machine from the storage alone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing import get_context
from pathlib import Path

import optuna

from project.errors import fail
from project.lab import runs
from project.lab.decide import from_study, progress
from project.lab.report import write_study
from project.run.paths import check_folder_name, check_output
from project.storage import StorageError, check_storage, database_error, masked, open_study, unreachable

HEARTBEAT = 10  # seconds between a running trial's heartbeats; silent for 2x that, it is failed and queued again
RETRIES = 3  # a run whose worker died is queued again at most this often
POLL = 2.0  # seconds a worker with nothing to take waits for the others' runs (a next look may follow them)
States = optuna.trial.TrialState


def study_name(name: str) -> str:
    return f"lab/{name}"


def _key(trial) -> tuple[str, int] | None:
    attrs = trial.user_attrs
    return (attrs["experiment"], int(attrs["seed"])) if "experiment" in attrs else None


class SharedStudy:
    """One worker's handle on the shared study: its definition, its queue and its results."""

    def __init__(self, name: str, url: str, definition: dict | None, heartbeat: int = HEARTBEAT):
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        check_storage(url)
        if not (isinstance(heartbeat, int) and heartbeat >= 1):
            fail("--heartbeat", heartbeat, "an integer number of seconds >= 1")
        self.name, self.url, self.heartbeat = name, url, heartbeat
        try:
            if definition is None and study_name(name) not in optuna.get_all_study_names(url):  # a report: no new study
                fail("--name", name, f"the name of a lab study in {masked(url)}",
                     "names none there; start its workers with make compare ... STORAGE=")
            self.study = open_study(study_name(name), url, "maximize", None, None, heartbeat, retries=RETRIES)
            self.storage = self.study._storage
            self.study_id = self.storage.get_study_id_from_name(study_name(name))
            known = self.study.user_attrs.get("definition")
            if definition is not None and known is None:
                self.study.set_user_attr("definition", definition)
                known = self.study.user_attrs["definition"]  # a worker that started at the same time may have won
        except Exception as err:
            self._lost(err)
        if not isinstance(known, dict):
            fail("--name", name, f"the name of a lab study in {masked(url)}", "names a study that is not the lab's")
        differs = [k for k in sorted(set(known) | set(definition or {})) if k != "command"  # how it was typed
                   and definition is not None and known.get(k) != definition.get(k)]
        if differs:
            differs = differs[0]
            fail("--name", name, "the same experiments, seeds and flags on every machine, or a new --name",
                 f"names a study in {masked(url)} started with other settings ({differs}: {known.get(differs)!r}, "
                 f"not {definition.get(differs)!r})")
        self.definition = known

    def _lost(self, err: BaseException):
        lost = database_error(err)
        if lost is None:
            raise err
        failure = unreachable(self.url, lost)
        failure.code = 1
        raise failure from None

    def trials(self, states=None) -> list:
        try:
            return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states)
        except Exception as err:
            self._lost(err)

    def results(self) -> dict:
        """Every finished run's figures by (experiment, seed), from the storage alone."""
        found = {}
        for trial in sorted(self.trials((States.COMPLETE,)), key=lambda t: t.number):
            if "result" in trial.user_attrs:
                found.setdefault(_key(trial), json.loads(trial.user_attrs["result"]))
        return found

    def enqueue(self, pairs: list[tuple[str, int]]) -> int:
        """Queues the runs no trial holds yet (waiting, running or finished); returns how many."""
        held = {_key(t) for t in self.trials((States.WAITING, States.RUNNING, States.COMPLETE))}
        new = [pair for pair in dict.fromkeys(pairs) if pair not in held]
        try:
            for experiment, seed in new:
                self.study.enqueue_trial({}, user_attrs={"experiment": experiment, "seed": seed})
        except Exception as err:
            self._lost(err)
        return len(new)

    def take(self):
        """The next queued run, now RUNNING and this worker's (None when nothing waits). Of the
        trials of one run, only the first not FAIL runs: a later copy is told PRUNED and skipped."""
        try:
            optuna.storages.fail_stale_trials(self.study)  # a dead worker's run goes back to the queue
            for trial in sorted(self.trials((States.WAITING,)), key=lambda t: t.number):
                try:
                    if not self.storage.set_trial_state_values(trial._trial_id, state=States.RUNNING):
                        continue
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
                earlier = [t for t in self.trials((States.WAITING, States.RUNNING, States.COMPLETE))
                           if _key(t) == _key(trial) and t.number < trial.number]
                if earlier:
                    self.storage.set_trial_state_values(trial._trial_id, state=States.PRUNED)
                    continue
                return self.storage.get_trial(trial._trial_id)
        except Exception as err:
            self._lost(err)
        return None

    def running(self) -> int:
        return len(self.trials((States.RUNNING,)))

    def finish(self, trial, result: dict) -> None:
        """A finished run (ok, or failed for a reason of its own such as a NaN): COMPLETE with its figures."""
        try:
            self.storage.set_trial_user_attr(trial._trial_id, "result", json.dumps(result))
            value = float(result["test_acc"]) if result["status"] == "ok" else 0.0
            self.storage.set_trial_state_values(trial._trial_id, state=States.COMPLETE, values=[value])
        except Exception as err:
            self._lost(err)

    def give_back(self, trial) -> None:
        """A run stopped by a signal: FAIL, and queued again for any worker."""
        try:
            self.storage.set_trial_state_values(trial._trial_id, state=States.FAIL)
            self.study.enqueue_trial({}, user_attrs=dict(trial.user_attrs))
        except Exception as err:
            self._lost(err)


class Heartbeat:
    """Records a running trial's heartbeat in the storage every ``heartbeat`` seconds, in a thread;
    a storage that stops answering is kept for the worker to report after the run."""

    def __init__(self, shared: SharedStudy, trial):
        self.shared, self.trial_id = shared, trial._trial_id
        self.stopped, self.error = threading.Event(), None
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stopped.is_set():
            try:
                self.shared.storage.record_heartbeat(self.trial_id)
            except Exception as err:  # the server went away: the run goes on, its result is kept locally
                self.error = err
                return
            self.stopped.wait(self.shared.heartbeat)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


def work(shared: SharedStudy, run_one, echo=print, plan=None, stopped=lambda: False) -> dict:
    """One worker: queues the study's runs (``plan()`` says which, from the results so far: all of a
    fixed study's, or the current look's), takes the next, runs it with ``run_one(experiment, seed)``,
    stores its figures, until nothing is queued or running. Returns the study's results."""
    host = socket.gethostname()
    done = 0
    while True:
        if shared.enqueue(plan(shared.results())):
            echo(f"{shared.name}: queued the next runs in {masked(shared.url)}")
        trial = shared.take()
        if trial is None:
            if shared.running():  # the others' runs: a next look may follow them, or a dead worker's retry
                time.sleep(POLL)
                continue
            if plan(shared.results()):  # finished just now: their next look
                continue
            return shared.results()
        experiment, seed = _key(trial)
        with Heartbeat(shared, trial) as beat:
            result = run_one(experiment, seed) | {"host": host, "pid": os.getpid(), "trial": trial.number}
        if beat.error is not None:
            shared._lost(beat.error)
        if result["status"] == "interrupted" or stopped():
            shared.give_back(trial)
            return shared.results()
        shared.finish(trial, result)
        done += 1
        summary = (f"test acc {result['test_acc']:.3f}  gap {result['gap']:+.3f}" if result["status"] == "ok"
                   else f"{result['status'].upper()}: {result['reason']}")
        echo(f"[{host} #{done}] {experiment} seed {seed}: {summary}  ({result['wall_s']:.1f} s; trial {trial.number})")


def plan_of(study: dict):
    """The runs a study needs next, given its results so far: all of a fixed study's, or the current look's."""
    if study["plan"] is None:
        pairs = [(e, s) for e in study["experiments"] for s in [*study["seeds"], *study["second"]]]
        return lambda results: [p for p in pairs if p not in results]
    claims, plan, tuning = from_study(study)
    return lambda results: progress(claims, plan, results, tuning)[0]


def worker(study: dict, name: str, url: str, out_dir: Path, args_of, isolated: bool, heartbeat: int, echo=print) -> dict:
    """One worker in this process: a finished run of this machine's (same configuration) is reused."""
    shared = SharedStudy(name, url, study, heartbeat)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    keys, vary = study["keys"], study["vary"]

    def one(experiment: str, seed: int) -> dict:
        return runs.cached(runs_dir, experiment, seed, keys[experiment]) or runs.run_one(
            experiment, seed, vary, args_of(experiment, seed), runs_dir, keys[experiment], f"{experiment} seed {seed}",
            isolated)

    return work(shared, one, echo, plan_of(study), stopped=lambda: runs.stop_signal is not None)


def _child(study, name, url, out_dir, args_of, isolated, heartbeat, threads) -> None:
    runs.worker_init(threads)  # one thread each, SIGINT and SIGTERM stop the run in progress
    try:
        worker(study, name, url, out_dir, args_of, isolated, heartbeat, echo=lambda line: print(line, flush=True))
    except StorageError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        sys.exit(err.code)
    sys.exit(128 + runs.stop_signal if runs.stop_signal is not None else 0)


def run_workers(study: dict, name: str, url: str, out_dir: Path, args_of, echo, isolated: bool, heartbeat: int,
                jobs: int) -> dict:
    """``jobs`` workers on this machine (processes of one thread each, as the lab runs on one
    machine), or this process alone for one. A signal to this process goes to each of them."""
    shared = SharedStudy(name, url, study, heartbeat)  # the definition checked and stored before any worker
    echo(f"study {name}: {jobs} worker{'s' if jobs > 1 else ''} on {masked(url)}, "
         f"{len(shared.results())} runs done before")
    previous = {s: signal.signal(s, runs.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if jobs == 1:
            return worker(study, name, url, out_dir, args_of, isolated, heartbeat, echo)
        threads = runs.threads_per_job(jobs)
        context = get_context("spawn")
        processes = [context.Process(target=_child, args=(study, name, url, out_dir, args_of, isolated, heartbeat,
                                                          threads)) for _ in range(jobs)]
        for process in processes:
            process.start()

        def forward(signum, frame) -> None:  # a scheduler's SIGTERM reaches this process only
            runs.stop_signal = signum
            for process in processes:
                if process.is_alive():
                    os.kill(process.pid, signum)
        for s in previous:
            signal.signal(s, forward)
        for process in processes:
            process.join()
        if runs.stop_signal is None and any(p.exitcode == 1 for p in processes):  # the storage lost
            shared.results()  # one line naming it, if it is still away
            fail("--storage", masked(url), "a database server that stays up", "a worker lost it (see above)")
        return shared.results()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def report_from_storage(name: str, url: str, output: str = "logs/compare", echo=print) -> tuple[list[dict], list[dict]]:
    """``--report``: a shared study's results.md, results.csv, report.png (and conclusions) written
    from its storage alone, on any machine, as the worker that finished last writes them."""
    check_folder_name("--name", name)
    check_output("--output", Path(output))
    shared = SharedStudy(name, url, None)
    return write_study(shared.definition, shared.results(), Path(output) / name, echo, None)
