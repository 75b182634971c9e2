"""Stage 4, the search: an Optuna study whose trials are ordinary ``project fit`` runs.

    study.py    the space, the trials, signals; ``python -m project.search``
    storage.py  where a study lives: the URL and its driver, heartbeats, per-trial sampler seeds
    report.py   trials.csv, best.yaml, search.png

May import: every earlier stage (data, model, run) and this package; nothing imports it.
"""
