"""``python -m project.bench``: the benchmark's command (``make bench``)."""

from project.bench.training import main

main()
