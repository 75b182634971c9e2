"""Stage 4, the lab: experiments x seeds (or a sweep's points x seeds) as ordinary runs, their
statistics and what a study concludes.

    compare.py  the study: its runs, --replicate, --sweep; ``python -m project.lab``
    runs.py     one run of a study and the figures read back from it
    stats.py    intervals, paired differences, Holm, replication
    report.py   results.csv, results.md, conclusions.md and report.png
    curve.py    a learning curve: curve.md and curve.png of a --sweep

May import: every earlier stage (data, model, run) and this package; nothing imports it.
"""
