"""``python -m project`` and the ``project`` command. A stop while the libraries load (seconds)
is a stop like any other: one line and 128 + the signal's number, not a silent kill or a traceback.

The signal is only noted while torch loads (an exception raised inside its native start-up would
abort the process) and acted on as soon as the imports are done.
"""

import signal
import sys

_pending: list[int] = []


def _note(signum, frame):
    _pending.append(signum)


def run() -> None:
    signal.signal(signal.SIGTERM, _note)
    signal.signal(signal.SIGINT, _note)
    from project.run.cli import main

    if _pending:
        print(f"stopped by {signal.Signals(_pending[0]).name} before training began; saved nothing; run the same "
              "command again", file=sys.stderr, flush=True)
        sys.exit(128 + _pending[0])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()


if __name__ == "__main__":
    run()
