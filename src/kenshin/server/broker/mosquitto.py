"""Mosquitto 2.0 for production: configuration generated from the server's registry.

The server writes three files into one directory and Mosquitto reads them:

``mosquitto.conf``
    ``per_listener_settings false``, ``allow_anonymous false``, the two files below,
    ``persistence`` (with ``persistence_location``, ``autosave_interval``), a queue limit large
    enough that an ingest restart loses nothing, and one ``listener <port> <host>`` block per
    :class:`MosquittoListener` (127.0.0.1 for the server's own clients; a device-facing listener
    adds TLS files and ``use_username_as_clientid true``, so that a device cannot take over
    another device's session by using its client id).
``passwd`` (``password_file``)
    ``username:$7$<iterations>$<salt>$<key>`` per account: PBKDF2-HMAC-SHA512, the format
    ``mosquitto_passwd`` writes. The server stores exactly this string per device
    (:func:`.access.hash_password`), so the file is copied from the database: no plaintext is
    kept anywhere, and the tests check a file written here against the real broker.
``acl`` (``acl_file``)
    The topic rules of :mod:`.access`, once for every device, as patterns::

        pattern write k/%u/d      (and s, e, r: uplink)
        pattern read k/%u/c       (and g: downlink)
        user <service>
        topic readwrite k/#

    ``%u`` is the MQTT username, which is the gateway id. Patterns apply to every user, so no
    device needs a line of its own; the service users get ``k/#``. Shared subscriptions
    (``$share/ingest/k/+/d``) need nothing more: Mosquitto 2.0 does not check the ACL of a
    SUBSCRIBE from an MQTT 3.1.1 client (it grants the SUBACK; its changelog: "temporarily
    disable ACL checks on subscriptions when using MQTT v3.1.1") and checks ``read`` access
    for every message it delivers, against the message's real topic. So a device that
    subscribes to ``k/+/c`` or ``#`` is granted the SUBACK but receives only its own
    ``k/<gw>/c`` and ``k/<gw>/g``. A refused PUBLISH is acknowledged (3.1.1 has no negative
    PUBACK; an MQTT 5 client gets reason code 0x87) and dropped; a Will on a topic the device
    may not write is accepted at CONNECT and never sent.

Why generated files rather than the dynamic security plugin: (1) the server's database stays
the one source of truth; the files are a pure function of it, rewritten atomically and
reloaded with SIGHUP (``password_file`` and ``acl_file`` are re-read on reload; connections
already open are not affected, so a revoked device is also disconnected by the server
through other means or at its next reconnect); dynamic security keeps its own
``dynamic-security.json`` that can drift from the database and must be backed up with it.
(2) In Mosquitto 2.0 dynamic security has no ``%u``/``%c`` substitution in ACLs (it came in
2.1), so every device would need a role of its own; here two lines of patterns cover the
whole fleet. (3) Its API takes plaintext passwords (``createClient``/``setClientPassword``),
while the server keeps only hashes. (4) No admin credentials for a ``$CONTROL`` API to guard.
The cost: every change rewrites the whole ``passwd`` file (about 140 bytes per device) and
reloads it, which is fine at single-node scale; the scale-out shape uses an MQTT cluster with
its own authentication hook instead.

Persistence: Mosquitto writes its in-memory state (persistent sessions, queued QoS 1
messages, retained messages) every ``autosave_interval`` seconds and at shutdown, so a crash
of the broker can lose the messages of the last interval that the ingest had not yet taken;
the gateway's backfill from the meter's own history refills thirty-minute values.

:class:`MosquittoProcess` runs ``mosquitto -c <dir>/mosquitto.conf`` as a child process of
the server: ``start()`` waits until the port accepts, ``reload()`` sends SIGHUP, ``stop()``
sends SIGTERM (SIGKILL after a grace period), ``wait()`` returns when it exits. A managed
broker must never outlive its server (gateways would go on handing it readings that no
ingest takes, and a restarted server would find its port taken), so:

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
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from kenshin.ports import free_tcp_port, require_free_tcp_port

from .access import DOWNLINK_CHANNELS, TOPIC_ROOT, UPLINK_CHANNELS, Account, PrincipalKind

__all__ = [
    "CONFIG_NAME",
    "MosquittoFiles",
    "MosquittoListener",
    "MosquittoProcess",
    "directory_lock",
    "find_mosquitto",
    "free_tcp_port",
    "render_acl_file",
    "render_config",
    "render_password_file",
    "stop_orphan",
    "write_mosquitto_config",
]

CONFIG_NAME = "mosquitto.conf"
PASSWORD_FILE_NAME = "passwd"
ACL_FILE_NAME = "acl"
PERSISTENCE_DIR_NAME = "data"
LOG_FILE_NAME = "mosquitto.log"
PID_FILE_NAME = "mosquitto.pid"
LOCK_FILE_NAME = "server.lock"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DYNSEC_FILE_NAME = "dynamic-security.json"
MAX_PACKET_SIZE = 64 * 1024
_HEADER = "# Generated by kenshin from the server's registry. Do not edit: it is rewritten.\n"


@dataclass(frozen=True, slots=True)
class MosquittoListener:
    """One ``listener`` block. A device-facing one sets TLS files and
    ``username_as_client_id`` (``use_username_as_clientid true``)."""

    port: int
    host: str = "127.0.0.1"
    certfile: Path | None = None
    keyfile: Path | None = None
    cafile: Path | None = None
    username_as_client_id: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"listener port out of range: {self.port}")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("a TLS listener needs both certfile and keyfile")


@dataclass(frozen=True, slots=True)
class MosquittoFiles:
    """Where :func:`write_mosquitto_config` put things (all absolute paths)."""

    directory: Path
    config: Path
    password_file: Path
    acl_file: Path
    persistence_dir: Path | None


def _checked(accounts: Iterable[Account]) -> list[Account]:
    accounts = list(accounts)
    seen: set[str] = set()
    for account in accounts:  # Account validated names (no ':', spaces or newlines) and hash
        if account.username in seen:
            raise ValueError(f"duplicate MQTT username: {account.username!r}")
        seen.add(account.username)
    return accounts


def render_password_file(accounts: Iterable[Account]) -> str:
    """The ``password_file``: one ``username:$7$...`` line per account, sorted by name."""
    lines = sorted(f"{a.username}:{a.password_hash}\n" for a in _checked(accounts))
    return "".join(lines)


def render_acl_file(accounts: Iterable[Account]) -> str:
    """The ``acl_file``: the device patterns, then ``topic readwrite k/#`` per service user."""
    accounts = _checked(accounts)
    lines = [_HEADER, "# Devices (%u = MQTT username = gateway id): own uplink, own downlink.\n"]
    lines += [f"pattern write {TOPIC_ROOT}/%u/{ch}\n" for ch in sorted(UPLINK_CHANNELS)]
    lines += [f"pattern read {TOPIC_ROOT}/%u/{ch}\n" for ch in sorted(DOWNLINK_CHANNELS)]
    services = sorted(a.username for a in accounts if a.kind is PrincipalKind.SERVICE)
    if services:
        lines.append("\n# Services: everything under the root, plainly or by $share.\n")
    for name in services:
        lines += [f"user {name}\n", f"topic readwrite {TOPIC_ROOT}/#\n"]
    return "".join(lines)


def render_config(
    listeners: Iterable[MosquittoListener],
    *,
    password_file: Path | None,
    acl_file: Path | None,
    dynamic_security: tuple[str, Path] | None = None,
    max_packet_size: int = MAX_PACKET_SIZE,
    persistence_dir: Path | None,
    autosave_interval_s: int = 30,
    max_queued_messages: int = 1_000_000,
    user: str | None = None,
) -> str:
    """``mosquitto.conf``. ``user``: whom a broker started as root runs as (Mosquitto's
    default is ``mosquitto``, which must then be able to read the files)."""
    listeners = list(listeners)
    if not listeners:
        raise ValueError("at least one listener is needed")
    lines = [
        _HEADER,
        "per_listener_settings false\n",
        "allow_anonymous false\n",
        # A batch is a few hundred bytes, a command result a few kB: anything far larger is
        # refused by the broker before it costs memory anywhere.
        f"max_packet_size {max_packet_size}\n",
    ]
    if dynamic_security is not None:
        plugin, state = dynamic_security
        lines += [f"plugin {plugin}\n", f"plugin_opt_config_file {state}\n"]
    else:
        lines += [f"password_file {password_file}\n", f"acl_file {acl_file}\n"]
    if user is not None:
        lines.append(f"user {user}\n")
    if persistence_dir is not None:
        lines += [
            "persistence true\n",
            f"persistence_location {persistence_dir}\n",
            f"autosave_interval {autosave_interval_s}\n",
        ]
    else:
        lines.append("persistence false\n")
    lines += [
        # QoS 1 messages queued for a persistent session (the ingest, while it restarts):
        # Mosquitto's default of 1000 would drop readings.
        f"max_queued_messages {max_queued_messages}\n",
        "log_dest stderr\n",
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
        "connection_messages true\n",
    ]
    for listener in listeners:
        lines.append(f"\nlistener {listener.port} {listener.host}\n")
        if listener.certfile is not None:
            lines += [f"certfile {listener.certfile}\n", f"keyfile {listener.keyfile}\n"]
            if listener.cafile is not None:
                lines.append(f"cafile {listener.cafile}\n")
        if listener.username_as_client_id:
            lines.append("use_username_as_clientid true\n")
    return "".join(lines)


def _write_atomically(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_mosquitto_config(
    directory: str | os.PathLike[str],
    accounts: Iterable[Account],
    listeners: Iterable[MosquittoListener],
    *,
    persistence: bool = True,
    autosave_interval_s: int = 30,
    user: str | None = None,
    file_mode: int = 0o640,
    dynamic_security: bool = False,
) -> MosquittoFiles:
    """Write ``mosquitto.conf``, ``passwd`` and ``acl`` into ``directory`` (each file replaced
    atomically). Call it again after any account change, then :meth:`MosquittoProcess.reload`
    (or ``kill -HUP``) the broker. With `dynamic_security`, ``dynamic-security.json`` for
    the plugin (:mod:`.dynsec`) instead of the two files: later changes go through its API."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    accounts = _checked(accounts)
    files = MosquittoFiles(
        directory=directory,
        config=directory / CONFIG_NAME,
        password_file=directory / PASSWORD_FILE_NAME,
        acl_file=directory / ACL_FILE_NAME,
        persistence_dir=directory / PERSISTENCE_DIR_NAME if persistence else None,
    )
    if files.persistence_dir is not None:
        files.persistence_dir.mkdir(exist_ok=True)
    plugin = None
    if dynamic_security:
        from . import dynsec

        state = directory / DYNSEC_FILE_NAME
        _write_atomically(state, dynsec.config_text(accounts), 0o600)
        plugin = (dynsec.find_plugin(), state)
    else:
        _write_atomically(files.password_file, render_password_file(accounts), file_mode)
        _write_atomically(files.acl_file, render_acl_file(accounts), file_mode)
    config = render_config(
        listeners,
        password_file=files.password_file,
        acl_file=files.acl_file,
        persistence_dir=files.persistence_dir,
        autosave_interval_s=autosave_interval_s,
        user=user,
        dynamic_security=plugin,
    )
    _write_atomically(files.config, config, file_mode)
    return files


# --------------------------------------------------------------------------- process


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
        _write_atomically(self.config_dir / PID_FILE_NAME, f"{self._process.pid}\n", 0o644)
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
