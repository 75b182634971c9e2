"""A study across machines (project/lab/shared.py): the queue on an SQLite file by hand (no run taken
twice, a copy skipped, a run given back), then real worker processes on a real PostgreSQL server
(tests/helpers/postgres.py): two workers share a study and the report from the storage equals one
process's, a worker killed with SIGKILL has its run redone by another, SIGTERM gives its run back,
the server lost mid-study is one line and the study goes on, and a decided study across workers."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from project.errors import SettingError
from project.lab.compare import main as lab_main
from project.lab.shared import SharedStudy, study_name
from project.storage import masked
from tests.test_bad_inputs import assert_one_line

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
sys.path.insert(0, str(HELPERS))
import postgres  # noqa: E402 - the helper folder is not a package
from postgres import free_port  # noqa: E402

server = postgres.server  # one PostgreSQL server for the module's tests

TINY = ["--trainer.max_epochs=2", "--data.train_size=100", "--model.net.init_args.widths=[8,16]",
        "--model.net.init_args.hidden=16", "--data.dataset=digits"]
DEFINITION = {"experiments": ["baseline"], "seeds": [0, 1], "second": [], "vary": "both", "sweep": None,
              "keys": {"baseline": "k"}, "datasets": ["mnist5k"], "claims": None, "plan": None, "command": "c"}


def test_the_queue_by_hand_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    one, two = SharedStudy("q", url, DEFINITION), SharedStudy("q", url, DEFINITION)  # two workers
    assert one.enqueue([("baseline", 0), ("baseline", 1)]) == 2
    assert two.enqueue([("baseline", 0), ("baseline", 1), ("baseline", 1)]) == 0  # held already: queued once
    first, second = one.take(), two.take()
    assert {first.user_attrs["seed"], second.user_attrs["seed"]} == {0, 1} and one.take() is None
    assert one.running() == 2
    one.finish(first, {"status": "ok", "test_acc": 0.9, "seed": first.user_attrs["seed"]})
    two.give_back(second)  # a signal: FAIL, and the same run queued again
    states = [t.state.name for t in optuna.load_study(study_name=study_name("q"), storage=url).get_trials()]
    assert states == ["COMPLETE", "FAIL", "WAITING"]
    # a copy queued while the first is still held is skipped (PRUNED) when taken: the run runs once
    one.study.enqueue_trial({}, user_attrs={"experiment": "baseline", "seed": first.user_attrs["seed"]})
    again = one.take()
    assert again.user_attrs["seed"] == second.user_attrs["seed"] and one.take() is None
    assert one.results() == {("baseline", first.user_attrs["seed"]): {"status": "ok", "test_acc": 0.9,
                                                                        "seed": first.user_attrs["seed"]}}
    with pytest.raises(SettingError, match="started with other settings \\(seeds: \\[0, 1\\], not \\[0, 1, 2\\]\\)"):
        SharedStudy("q", url, DEFINITION | {"seeds": [0, 1, 2]})
    with pytest.raises(SettingError, match="--name=nothing names none there"):
        SharedStudy("nothing", url, None)


# --- real workers on a real server ---------------------------------------------------------------

def lab(name: str, url: str | None, folder: Path, *flags: str, extra=()) -> list[str]:
    return [sys.executable, "-m", "project.lab", "--name", name, "--jobs", "1", "--output", str(folder),
            *(["--storage", url] if url else []), *flags, "--", *TINY, "--trainer.callbacks+=phases.Pause", *extra]


def start(args: list[str], tmp_path: Path, pause_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(HELPERS), "PHASE_DIR": str(tmp_path)}
    if pause_at:  # phases.Pause pauses in the second epoch of every run (every worker has it: the same study)
        env["PAUSE_AT"] = pause_at
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, code: int = 0) -> tuple[str, str]:
    out, err = process.communicate(timeout=600)
    assert process.returncode == code, err[-3000:]
    return out, err


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)


def trials(url: str, name: str) -> list:
    return optuna.load_study(study_name=study_name(name), storage=url).get_trials()


def table(path: Path) -> list[dict]:
    """results.csv without the seconds, which differ between machines."""
    return [{k: v for k, v in row.items() if not k.startswith("wall_s")} for row in csv.DictReader(open(path))]


def runs_done(url: str, name: str) -> list[tuple]:
    return sorted((t.user_attrs["experiment"], t.user_attrs["seed"]) for t in trials(url, name)
                  if t.state.name == "COMPLETE")


def test_two_workers_share_a_study_and_the_report_from_the_storage_equals_one_process(tmp_path, server):
    url, study = server.url(), ["--experiments", "baseline,dropout", "--seeds", "0,1"]
    alone = tmp_path / "alone"  # the same study by one process without a storage, at the same time
    processes = [start(lab("two", url, tmp_path / f"machine{i}", *study), tmp_path) for i in (1, 2)]
    processes.append(start(lab("two", None, alone, *study), tmp_path))
    outputs = [finish(p) for p in processes]
    assert runs_done(url, "two") == sorted({(e, s) for e in ("baseline", "dropout") for s in (0, 1)})  # once each
    said = [line for out, _ in outputs[:2] for line in out.splitlines() if line.startswith("[")]
    assert len(said) == 4  # every run was said by the worker that ran it, and only there
    lab_main(["--report", "--name", "two", "--storage", url, "--output", str(tmp_path / "anywhere")])
    assert table(tmp_path / "anywhere" / "two" / "results.csv") == table(alone / "two" / "results.csv")
    machines = list(csv.DictReader(open(tmp_path / "anywhere" / "two" / "runs.csv")))
    assert len(machines) == 4 and all(row["host"] and row["status"] == "ok" for row in machines)
    assert not (tmp_path / "anywhere" / "two" / "runs").exists()  # the log folders stay where they ran


def test_a_bad_storage_url_or_report_is_one_line_before_any_work(tmp_path, server, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    closed = free_port()
    for flags, code, named, says in (
            (["--storage", "nosuch://u:secret@127.0.0.1/x"], 2, "--storage=nosuch://u:***@127.0.0.1/x",
             "is not a storage URL"),
            (["--storage", f"postgresql://u:secret@127.0.0.1:{closed}/x"], 1,
             f"--storage=postgresql://u:***@127.0.0.1:{closed}/x", f"cannot be reached at 127.0.0.1:{closed}"),
            (["--storage", server.url(password="wrong secret")], 2, "--storage=", "password authentication failed"),
            (["--storage", server.url(), "--heartbeat", "0"], 2, "--heartbeat=0", "an integer number of seconds"),
            (["--storage", server.url(), "--report", "--name", "nothing"], 2, "--name=nothing", "names none there"),
            (["--report"], 2, "--report=on", "--storage URL as well")):
        with pytest.raises(SystemExit) as done:
            lab_main(["--experiments", "baseline", "--output", str(tmp_path / "out"), *flags, "--", *TINY])
        captured = capsys.readouterr()
        assert_one_line(done.value.code, captured.out, captured.err, named, expected_code=code, says=says)
        assert "secret" not in captured.err and not (tmp_path / "out").exists()
    assert study_name("nothing") not in optuna.get_all_study_names(server.url())  # a report makes no study


@pytest.mark.slow  # 40 s of real workers and a heartbeat gone stale; make test-all
def test_a_worker_killed_mid_run_has_its_run_redone_by_another(tmp_path, server):
    url, study = server.url(), ["--experiments", "baseline", "--seeds", "0,1", "--heartbeat", "1"]
    killed = start(lab("killed", url, tmp_path / "m1", *study), tmp_path, pause_at="training")
    wait_for(tmp_path / "training", killed)
    killed.kill()  # SIGKILL: no clean-up of any kind
    killed.communicate()
    assert [t.state.name for t in trials(url, "killed")] == ["RUNNING", "WAITING"]
    time.sleep(2.5)  # twice the heartbeat: stale
    finish(start(lab("killed", url, tmp_path / "m2", *study), tmp_path))
    states = trials(url, "killed")
    assert states[0].state.name == "FAIL" and runs_done(url, "killed") == [("baseline", 0), ("baseline", 1)]
    retry = [t for t in states if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].user_attrs["seed"] == \
        states[0].user_attrs["seed"]


@pytest.mark.slow  # 30 s; make test-all
def test_sigterm_gives_the_run_back_and_the_study_goes_on(tmp_path, server):
    url, study = server.url(), ["--experiments", "baseline", "--seeds", "0"]
    stopped = start(lab("term", url, tmp_path / "m1", *study), tmp_path, pause_at="training")
    wait_for(tmp_path / "training", stopped)
    stopped.send_signal(signal.SIGTERM)
    _, err = finish(stopped, 143)
    assert err.strip().splitlines()[-1].startswith("error: stopped by signal 15; its run is queued again in "
                                                   f"{masked(url)}") and len(err.strip().splitlines()) == 1, err
    assert [t.state.name for t in trials(url, "term")] == ["FAIL", "WAITING"]
    finish(start(lab("term", url, tmp_path / "m2", *study), tmp_path))
    assert runs_done(url, "term") == [("baseline", 0)]


@pytest.mark.slow  # 40 s: the server stopped and started again; make test-all
def test_the_server_lost_mid_study_is_one_line_and_nothing_finished_is_redone(tmp_path, server):
    url, study = server.url(), ["--experiments", "baseline", "--seeds", "0,1", "--heartbeat", "1"]
    first = start(lab("outage", url, tmp_path / "m1", *study), tmp_path, pause_at="training")
    wait_for(tmp_path / "training", first)
    server.stop()
    try:
        (tmp_path / "go").touch()
        _, err = first.communicate(timeout=120)
    finally:
        server.start()
    assert_one_line(first.returncode, "", err.strip().splitlines()[-1] + "\n",
                    f"--storage={masked(url)} cannot be reached at 127.0.0.1:{server.port}", expected_code=1)
    result = json.loads(next((tmp_path / "m1" / "outage" / "runs" / "baseline").glob("seed_*/result.json")).read_text())
    assert result["status"] == "ok"  # the run it was on finished and is kept on its machine
    (tmp_path / "go").unlink()
    time.sleep(2.5)
    again = start(lab("outage", url, tmp_path / "m1", *study), tmp_path)  # the same machine, the same command
    out, _ = finish(again)
    assert runs_done(url, "outage") == [("baseline", 0), ("baseline", 1)]
    ran = [line for line in out.splitlines() if line.startswith("[")]
    assert len(ran) == 2 and f"seed {result['seed']}: test acc {result['test_acc']:.3f}" in "\n".join(ran)


@pytest.mark.slow  # 60 s; make test-all
def test_a_decided_study_across_two_workers_queues_each_look_once(tmp_path, server):
    claims = tmp_path / "claims.yaml"
    claims.write_text("claims:\n  - {claim: L1 zeros, experiment: penalty.l1=0.01, metric: zero_fraction, expect: higher}\n"
                      "  - {claim: dropout, experiment: dropout, metric: test_acc, expect: higher}\n")
    url = server.url()
    flags = ["--until-decided", "--claims", str(claims), "--seeds", "0,1", "--round", "1", "--max-seeds", "3"]
    extra = ["--penalty.l1_mode=proximal"]
    workers = [start(lab("decided", url, tmp_path / f"m{i}", *flags, extra=extra), tmp_path) for i in (1, 2)]
    for w in workers:
        finish(w)
    done = runs_done(url, "decided")
    assert len(done) == len(set(done))  # no run twice
    finish(start(lab("decided", None, tmp_path / "alone", *flags, extra=extra), tmp_path))
    shared = json.loads(next((tmp_path / f"m{i}" / "decided" / "conclusions.json") for i in (1, 2)
                             if (tmp_path / f"m{i}" / "decided" / "conclusions.json").exists()).read_text())
    alone = json.loads((tmp_path / "alone" / "decided" / "conclusions.json").read_text())
    assert [(c["verdict"], c["estimate"], c["seeds"]) for c in shared["claims"]] == \
        [(c["verdict"], c["estimate"], c["seeds"]) for c in alone["claims"]]
    assert shared["runs"]["sequential"] == len(done)


@pytest.mark.slow  # 40 s; make test-all
def test_one_command_runs_a_worker_per_job_and_passes_a_scheduler_signal_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    both = lab("jobs", url, tmp_path / "m", "--experiments", "baseline", "--seeds", "0,1,2,3", "--jobs", "2")
    finish(start(both, tmp_path))
    machines = list(csv.DictReader(open(tmp_path / "m" / "jobs" / "runs.csv")))
    assert len(machines) == 4 and len({row["pid"] for row in machines}) == 2  # two worker processes shared them
    stopped = start(lab("jobs2", url, tmp_path / "m", "--experiments", "baseline", "--seeds", "0,1,2,3", "--jobs", "2"),
                    tmp_path, pause_at="training")
    deadline = time.time() + 120
    while sum(t.state.name == "RUNNING" for t in (trials(url, "jobs2") if (tmp_path / "training").exists() else [])) < 2:
        assert stopped.poll() is None and time.time() < deadline, stopped.communicate()
        time.sleep(0.2)
    stopped.send_signal(signal.SIGTERM)  # to the parent only, as a scheduler does
    _, err = finish(stopped, 143)
    assert err.strip().splitlines()[-1].startswith("error: stopped by signal 15; its run is queued again"), err
    states = [t.state.name for t in trials(url, "jobs2")]
    assert states.count("FAIL") == 2 and "RUNNING" not in states and states.count("WAITING") == 4
