"""A managed Mosquitto: the broker as a child process of the server.

Its configuration is written by :mod:`.mosquitto_config`. :class:`MosquittoProcess` runs
``mosquitto -c <dir>/mosquitto.conf``: ``start()`` waits until the port accepts,
``reload()`` sends SIGHUP, ``stop()`` sends SIGTERM (SIGKILL after a grace period),
``wait()`` returns when it exits.

Persistence: Mosquitto writes its in-memory state (persistent sessions, queued QoS 1
messages, retained messages) every ``autosave_interval`` seconds and at shutdown, so a crash
of the broker can lose the messages of the last interval that the ingest had not yet taken;
the gateway's backfill from the meter's own history refills thirty-minute values.

A managed broker must never outlive its server (gateways would go on handing it readings that
no ingest takes, and a restarted server would find its port taken), so:

* the child asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``): a
  ``kill -9`` of the server stops the broker too, which still saves its persistence file;
* its pid is written to ``mosquitto.pid`` in the directory; a server that starts and finds
  a live Mosquitto of that pid, running this very configuration, stops it first
  (:func:`stop_orphan`), in case the death signal could not be delivered;
* the directory is locked (``server.lock``, ``flock``) for as long as a server uses it, so two
  servers cannot run two brokers over one persistence file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
from pathlib import Path
from types import TracebackType
from typing import Self

from kenshin.ports import free_tcp_port, require_free_tcp_port

from .mosquitto_config import CONFIG_NAME, LOG_FILE_NAME, write_atomically

PID_FILE_NAME = "mosquitto.pid"
LOCK_FILE_NAME = "server.lock"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

__all__ = [
    "MosquittoProcess",
    "directory_lock",
    "find_mosquitto",
    "free_tcp_port",
    "stop_orphan",
]


def find_mosquitto() -> str:
    """Path of the ``mosquitto`` binary (``$PATH``, then the usual sbin directories)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("mosquitto is not installed")


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class MosquittoProcess:
    """``mosquitto -c <config_dir>/mosquitto.conf`` as a child process; its log goes to
    ``<config_dir>/mosquitto.log``.

    ``async with MosquittoProcess(files.directory, port) as broker: ... broker.url``
    """

    def __init__(
        self,
        config_dir: str | os.PathLike[str],
        port: int,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.config_dir = Path(config_dir).resolve()
        self.port = port
        self.host = host
        self.log_file = self.config_dir / LOG_FILE_NAME
        self._binary = binary
        self._startup_timeout_s = startup_timeout_s
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    async def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("mosquitto is already started")
        config = self.config_dir / CONFIG_NAME
        if not config.is_file():
            raise FileNotFoundError(config)
        require_free_tcp_port(self.host, self.port, "MQTT")  # PortTaken names the holder
        binary = self._binary or find_mosquitto()
        with open(self.log_file, "ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                binary,
                "-c",
                str(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with(os.getpid()),
            )
        write_atomically(self.config_dir / PID_FILE_NAME, f"{self._process.pid}\n", 0o644)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._startup_timeout_s
        while True:
            if self._process.returncode is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"mosquitto exited with {code}:\n{self.log_text()}")
            if await _accepts(self.host, self.port):
                return
            if loop.time() > deadline:
                await self.stop()
                raise TimeoutError(f"mosquitto did not listen on {self.url}:\n{self.log_text()}")
            await asyncio.sleep(0.02)

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its configuration, ``password_file`` and ``acl_file``."""
        if self._process is None or self._process.returncode is not None:
            raise RuntimeError("mosquitto is not running")
        self._process.send_signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def wait(self) -> int:
        """Until the process exits (at once if it is not running); its exit code."""
        process = self._process
        if process is None:
            return 0
        code = await process.wait()
        if self._process is process:
            self._process = None
            with contextlib.suppress(FileNotFoundError):
                (self.config_dir / PID_FILE_NAME).unlink()
        return code

    async def stop(self, grace_s: float = 5.0) -> None:
        process, self._process = self._process, None
        with contextlib.suppress(FileNotFoundError):
            (self.config_dir / PID_FILE_NAME).unlink()
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _die_with(parent_pid: int):
    """A preexec function: the child gets SIGTERM when the server dies (Linux; elsewhere the
    pid file's check at the next start stops an orphan)."""

    def arrange() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before the request took hold
            os._exit(1)

    return arrange


def _is_our_mosquitto(pid: int, config: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(argv)
        and Path(os.fsdecode(argv[0])).name == "mosquitto"
        and (os.fsencode(str(config)) in argv)
    )


async def stop_orphan(config_dir: str | os.PathLike[str], grace_s: float = 10.0) -> int | None:
    """Stop a Mosquitto that an earlier server left running on this directory's
    configuration (its pid file names it, and its command line shows the same config);
    returns its pid, or None when there was none. SIGTERM first, so it saves its
    persistence (queued readings); SIGKILL after `grace_s`."""
    config_dir = Path(config_dir).resolve()
    try:
        pid = int((config_dir / PID_FILE_NAME).read_text().strip())
    except (OSError, ValueError):
        return None
    if not _is_our_mosquitto(pid, config_dir / CONFIG_NAME):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a stopped process would keep the SIGTERM pending
        os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while _is_our_mosquitto(pid, config_dir / CONFIG_NAME):
        if loop.time() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        (config_dir / PID_FILE_NAME).unlink()
    return pid


class DirectoryInUse(RuntimeError):
    """Another server process holds this broker directory."""


def directory_lock(config_dir: str | os.PathLike[str]) -> int:
    """Lock the broker directory for this process (released when it exits, however it
    exits); returns the lock's file descriptor. Raises DirectoryInUse naming the holder."""
    path = Path(config_dir) / LOCK_FILE_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the broker
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DirectoryInUse(
            f"broker directory {config_dir} is in use by another server (pid {holder}); "
            "give each server its own mosquitto_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
