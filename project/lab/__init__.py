"""Stage 4, the lab: experiments x seeds (or a sweep's points x seeds) as ordinary runs, their
statistics and what a study concludes.

    compare.py      the study: its runs, --replicate, --sweep, --until-decided; ``python -m project.lab``
    experiments.py  what an experiment is: a name, a setting, a config file or several joined by +, on a baseline
    configs.py      each run's flags, every experiment parsed before any run, what the page says of the baseline
    runs.py         one run of a study, the figures read back from it, the runner on this machine
    shared.py       a study across machines: workers sharing its runs on Optuna's storage (--storage)
    stats.py        the table's intervals, paired differences, Holm, replication
    claims.py       a claims file: the claims, their baseline, margins and seed caps, the tuned arms' grid
    sequential.py   a claim's two hypotheses, sequential p-values over the looks, the page's FDR or FWER
    decide.py       seeds until decided, tuned arms, then the recheck (``--until-decided``)
    simulate.py     the design checked by simulation on the lab's own differences (``python -m project.lab.simulate``)
    conclusions.py  conclusions.md and conclusions.json of a decided study
    report.py       results.csv, results.md, report.png, runs.csv; everything a study writes
    curve.py        a learning or dose curve: curve.md and curve.png of a --sweep

May import: every earlier stage (data, model, run) and this package; nothing imports it.
"""
