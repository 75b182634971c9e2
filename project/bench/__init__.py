"""Stage 4, the benchmark: our training loop against the references a user would otherwise write.

    training.py  the speed rows (ratios to hand-written loops) and the command; ``python -m project.bench``
    digits.py    the default digits run through its parts: time to 98%, monitoring's cost, the clean eval's
    startup.py   a command's start-up: our imports over Lightning's
    data.py      the data rows: memory while loading, streaming against memory

May import: every earlier stage (data, model, run) and this package; nothing imports it.
"""
