"""Paths and names, checked before any work: a path the file system can hold (a longer one fails
deep inside with a bare ENAMETOOLONG), a folder the logs can be written to, a study's name as one
folder under its output."""

from __future__ import annotations

import os
from pathlib import Path

from project.errors import SettingError, fail

NAME_BYTES, PATH_BYTES = 255, 4095  # a file or folder name, and a whole path, on Linux and macOS file systems


def check_path(setting: str, value) -> None:
    """A path the file system can hold: a longer one fails deep inside with a bare ENAMETOOLONG."""
    if not isinstance(value, (str, Path)):
        return
    text = str(value)
    longest = max((len(part.encode()) for part in Path(text).parts), default=0)
    if longest > NAME_BYTES or len(text.encode()) > PATH_BYTES:
        fail(setting, text, f"a path of at most {PATH_BYTES:,} bytes, each file or folder name at most {NAME_BYTES}",
             f"has a name of {longest:,} bytes" if longest > NAME_BYTES else f"is {len(text.encode()):,} bytes long")



def check_writable(folder: Path) -> None:
    """Fail before training when the logs cannot be written, not at the first checkpoint."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise SettingError("trainer.logger.save_dir", folder, "a folder this user can write",
                           f"cannot hold logs and checkpoints ({err.strerror or err})") from None


NAME_MAX = 100  # characters of a study or run name: a folder name, far below a file system's 255 bytes


def check_folder_name(setting: str, name: str) -> None:
    """A study's name becomes one folder under the output: no path separators, no escape upwards."""
    if not name or len(name) > NAME_MAX or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        fail(setting, name if len(name) <= 60 else f"{name[:60]}...", f"a folder name of 1 to {NAME_MAX} characters "
             "without / (it becomes one folder under the output)")


def check_output(setting: str, folder: Path) -> None:
    """The output folder exists or can be made, and this user can write it; nothing is made here."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        fail(setting, folder, "a folder (made if missing)", f"lies under {probe}, which is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        fail(setting, folder, "a folder this user can write", f"cannot be written ({probe} is read-only)")


def logger_settings(config) -> tuple[str, str, object]:
    """The logger's save_dir and name, and its init_args to change (None: no TensorBoard-like logger)."""
    logger = config.trainer.get("logger")
    init = logger.get("init_args") if hasattr(logger, "get") else None
    if init is None:
        return "logs", "default", None
    return init.get("save_dir", "logs"), init.get("name", "default"), init
