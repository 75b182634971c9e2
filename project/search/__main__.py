"""``python -m project.search``: the search's command (``make search``)."""

from project.search.study import main

main()
