"""A user's own code and files: the held-out table of mistakes (test_mistakes.py) and the classes it uses."""
