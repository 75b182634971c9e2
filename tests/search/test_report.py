"""What a search writes (project/search/report.py), from a study told its values by hand: every
trial's row in trials.csv, the best trial's config in best.yaml, and the picture."""

import csv

import optuna

from project.search.report import write_results

SPACE = {"metric": "val/acc_best", "direction": "maximize"}


def test_trials_csv_best_yaml_and_plot_from_a_hand_told_study(tmp_path):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for value, lr in ((0.80, 0.1), (0.95, 0.01), (0.90, 0.001)):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1.0, log=True)
        trial.set_user_attr("flags", [f"--model.optimizer.lr={lr}"])
        trial.set_user_attr("worker", "host-1")
        trial.report(value, 0)
        study.tell(trial, value)
    pruned = study.ask()
    pruned.suggest_float("lr", 1e-4, 1.0, log=True)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    written = write_results(study, SPACE, tmp_path, lambda flags: "model:\n  optimizer: " + " ".join(flags) + "\n")
    with open(written["trials"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["number"], r["state"], r["value"]) for r in rows] == [
        ("0", "COMPLETE", "0.8"), ("1", "COMPLETE", "0.95"), ("2", "COMPLETE", "0.9"), ("3", "PRUNED", "")]
    assert rows[0]["worker"] == "host-1" and rows[0]["epochs_reported"] == "1" and rows[0]["retry_of"] == ""
    best = written["best"].read_text()
    assert best.startswith("# best trial 1 of study") and "val/acc_best = 0.950000" in best
    assert "--model.optimizer.lr=0.01" in best
    assert written["plot"].stat().st_size > 20_000


def test_no_complete_trial_writes_the_table_only(tmp_path):
    study = optuna.create_study()
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    written = write_results(study, SPACE, tmp_path, lambda flags: "")
    assert set(written) == {"trials"} and not (tmp_path / "best.yaml").exists()
