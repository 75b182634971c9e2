"""Stage 4, the lab: experiments x seeds (or a sweep's points x seeds) as ordinary runs, their
statistics and what a study concludes.

    compare.py      the study: its runs, --replicate, --sweep, --until-decided; ``python -m project.lab``
    runs.py         one run of a study, the figures read back from it, the runner on this machine
    shared.py       a study across machines: workers sharing its runs on Optuna's storage (--storage)
    stats.py        intervals, paired differences, Holm, replication, verdicts (effect / no effect / undecided)
    decide.py       the lecture's claims and seeds until decided, then the recheck (``--until-decided``)
    conclusions.py  conclusions.md and conclusions.json of a decided study
    report.py       results.csv, results.md, report.png, runs.csv; everything a study writes
    curve.py        a learning or dose curve: curve.md and curve.png of a --sweep

May import: every earlier stage (data, model, run) and this package; nothing imports it.
"""
