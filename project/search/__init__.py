"""Stage 4, the search: an Optuna study whose trials are ordinary ``project fit`` runs.

    study.py    the space, the trials, signals; ``python -m project.search``
    report.py   trials.csv, best.yaml, search.png

Where its study lives (the URL, its driver, heartbeats) is project/storage.py, shared with the lab.

May import: every earlier stage (data, model, run) and this package; nothing imports it.
"""
