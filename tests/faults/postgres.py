"""A PostgreSQL server of the test's own (initdb into a temp dir, a free port), which the
test may stop and start: never the machine's, which other tests and people use.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from kenshin.ports import free_tcp_port


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    raise FileNotFoundError(f"{name} (PostgreSQL server) is not installed")


class OwnPostgres:
    """In a temp dir of its own: as root the `postgres` user must reach it, and pytest's
    tmp_path lies under a directory only root may enter."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="kenshin-pg-")) / "pgdata"
        self.port = free_tcp_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            pwd.getpwnam(self._user)  # KeyError: no such user to run it as

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = list(argv)
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> OwnPostgres:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            shutil.chown(self.directory.parent, self._user)
        self._run(
            _binary("initdb"), "-D", str(self.directory), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        return self

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories="
        options += str(self.directory) + " -c fsync=off"
        self._run(
            _binary("pg_ctl"), "-D", str(self.directory), "-o", options, "-l",
            str(self.directory / "server.log"), "-w", "start",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: as a crash looks to the clients (connections cut, no goodbye)."""
        self._run(_binary("pg_ctl"), "-D", str(self.directory), "-m", mode, "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("fast")
        shutil.rmtree(self.directory.parent, ignore_errors=True)
