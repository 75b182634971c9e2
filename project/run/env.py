"""Settings from environment variables: ``PL_<SUBCOMMAND>__<KEY>``, ``__`` between the parts.

jsonargparse reads them itself (``default_env``), except under a setting whose value is a class:
there it reads one variable holding the whole class (``PL_FIT__DATA='{"class_path": ...}'``), and
would ignore ``PL_FIT__DATA__BATCH_SIZE=16`` without a word. Those are passed on as flags.
"""

from __future__ import annotations

import os

# Settings whose value is a class: jsonargparse reads each as one variable holding the whole class
# (PL_FIT__DATA='{"class_path": ...}'), and would ignore PL_FIT__DATA__BATCH_SIZE without a word.
CLASS_ENV = ("DATA", "MODEL__NET", "MODEL__OPTIMIZER", "MODEL__SCHEDULER", "EARLY_STOPPING", "TRAINER__LOGGER",
             "TRAINER__STRATEGY")


def env_flags(subcommand: str) -> list[str]:
    """``PL_FIT__DATA__BATCH_SIZE=16`` as ``--data.batch_size=16``, placed before the command line's own
    flags and config files, so they win over it as over every other environment variable."""
    prefix = f"PL_{subcommand.upper()}__"
    flags = []
    for name, value in sorted(os.environ.items()):
        key = name[len(prefix):] if name.startswith(prefix) else ""
        if any(key.startswith(f"{owner}__") for owner in CLASS_ENV):
            flags.append(f"--{key.lower().replace('__', '.')}={value}")
    return flags
