"""What a search writes: trials.csv (every trial's final state), best.yaml (a config that
reproduces the best trial) and search.png (the optimization history and parameter importances)."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import optuna


def write_results(study: optuna.Study, space: dict, out_dir: Path, best_config) -> dict[str, Path]:
    """trials.csv, best.yaml (``best_config(flags)``: the resolved config of the best trial's flags)
    and the plots."""
    written = {"trials": out_dir / "trials.csv"}
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    with open(written["trials"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", *keys, "epochs_reported", "worker", "retry_of", "seconds"])
        for t in trials:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value, *(t.params.get(k, "") for k in keys),
                             len(t.intermediate_values), t.user_attrs.get("worker", ""),
                             _retry_of(t), seconds])
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return written
    best = study.best_trial
    header = (f"# best trial {best.number} of study {study.study_name}: {space['metric']} = {best.value:.6f}\n"
              f"# reproduce: project fit --config {out_dir / 'best.yaml'}\n")
    written["best"] = out_dir / "best.yaml"
    written["best"].write_text(header + best_config(best.user_attrs["flags"]))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    with warnings_quiet():
        figure, (history, importance) = plt.subplots(1, 2, figsize=(14, 5), dpi=100)
        values = [t.value for t in completed]
        numbers = [t.number for t in completed]
        running = [max(values[: i + 1]) if space["direction"] == "maximize" else min(values[: i + 1])
                   for i in range(len(values))]
        history.plot(numbers, values, "o", label="trial")
        history.plot(numbers, running, "-", color="tab:red", label="best so far")
        pruned = [t.number for t in trials if t.state == optuna.trial.TrialState.PRUNED]
        if pruned:
            history.plot(pruned, [min(values)] * len(pruned), "x", color="gray", label="pruned")
        history.set(title=f"optimization history ({len(completed)} complete, {len(pruned)} pruned)",
                    xlabel="trial", ylabel=space["metric"])
        history.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        history.grid(alpha=0.3)
        history.legend()
        if len(completed) >= 2 and keys:
            scores = optuna.importance.get_param_importances(study)
            names = list(scores)[::-1]
            importance.barh(names, [scores[n] for n in names])
            importance.set(title="parameter importance (fANOVA)", xlabel="share of the metric's variance")
        else:
            importance.text(0.5, 0.5, "importances need two complete trials", ha="center")
            importance.set_axis_off()
        figure.tight_layout()
        written["plot"] = out_dir / "search.png"
        figure.savefig(written["plot"])
        plt.close("all")
    return written


@contextlib.contextmanager
def warnings_quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield




def _retry_of(trial: optuna.trial.FrozenTrial) -> str:
    """The trial this one retries (its worker died), or ''."""
    number = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return "" if number is None else str(number)
