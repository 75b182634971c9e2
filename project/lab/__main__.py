"""``python -m project.lab``: the lab's command (``make compare``)."""

from project.lab.compare import main

main()
