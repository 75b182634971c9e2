"""Stage 4, the benchmark: our training loop against the references a user would otherwise write.

    training.py  the speed rows (ratios to hand-written loops) and the command; ``python -m project.bench``
    data.py      the data rows: memory while loading, streaming against memory

May import: every earlier stage (data, model, run) and this package; nothing imports it.
"""
