"""``python -m project`` and the ``project`` command. A stop while the libraries load (seconds)
is a stop like any other: one line and 128 + the signal's number, not a silent kill or a traceback."""

import signal
import sys


class _Stopped(BaseException):
    def __init__(self, signum: int):
        self.signum = signum


def _stop(signum, frame):
    raise _Stopped(signum)


def run() -> None:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        from project.cli import main
    except _Stopped as stopped:
        print(f"stopped by {signal.Signals(stopped.signum).name} before training began; saved nothing; run the same "
              "command again", file=sys.stderr, flush=True)
        sys.exit(128 + stopped.signum)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()


if __name__ == "__main__":
    run()
