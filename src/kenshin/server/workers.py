"""Several processes for one server (`kenshin server run --workers N`, N > 1).

- **API workers**: N uvicorn worker processes accept on the one socket the parent bound,
  each with its own engine and pool (`db_pool_size` + `db_pool_overflow` connections).
  They serve HTTP only: devices and jobs are off in them.
- **The background process**: one more process runs what must run once, whatever N: the
  MQTT side (broker, ingest, pushers) and the periodic jobs (forecasts, alerts, webhooks,
  retention). It is the application's own lifespan, with no HTTP socket.
- **The parent** migrates the database once, starts the background process, then
  supervises the workers (uvicorn's supervisor: a worker that dies is replaced).

A request that changes what gateways must be told (settings, a command, a new meter, an
enrolment) wakes the pushers at once in one process; across processes the worker's
`device_service` is a `RelayedDeviceService`, which tells the background process over a
loopback datagram, and knows the broker's endpoint for enrolment answers. A lost wake
costs no more than a delay: the pushers look again every 30 s anyway. A new or revoked
broker credential is a request that waits for the background's answer (the gateway
connects right after it is told its password), and carries a secret: each datagram is
signed with a key made for this server run (HMAC-SHA256), so no other local process can
grant itself a broker login through the relay.

Why not the parent for the background work: uvicorn's supervisor owns the parent's main
thread and signals; a process of its own also keeps a stuck job from stalling restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import signal
import socket
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .settings import Settings

__all__ = ["BACKGROUND_NAME", "RelayedDeviceService", "api_worker_app", "run_background"]

log = logging.getLogger(__name__)
WAKE, CREDENTIALS = b"w", b"c"
BACKGROUND_NAME = "kenshin-bg"  # the background process's name (15 characters at most)


@dataclass
class RelayedDeviceService:
    """The device service as an API worker sees it: it runs in the background process."""

    endpoint: Any  # the broker (runtime.BrokerEndpoint), or None
    mode: str
    relay_port: int
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    alternates: list = field(default_factory=list)  # a cluster's other nodes

    def __getstate__(self) -> dict[str, Any]:  # pickled to the workers, without a socket
        return {k: v for k, v in self.__dict__.items() if k != "_sock"}

    def _send(self, what: bytes) -> None:
        sock = self.__dict__.get("_sock")
        if sock is None:
            sock = self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
        with contextlib.suppress(OSError):  # a full buffer: the pushers' own round comes
            sock.sendto(_signed(self.key, what), ("127.0.0.1", self.relay_port))

    def wake(self) -> None:
        self._send(WAKE)

    def credential_issued(self, username: str, password: str, timeout_s: float = 10.0) -> None:
        self._ask({"do": "grant", "username": username, "password": password}, timeout_s)

    def credential_revoked(self, username: str, timeout_s: float = 10.0) -> None:
        self._ask({"do": "revoke", "username": username}, timeout_s)

    def _ask(self, request: dict, timeout_s: float) -> None:
        """Send, and wait for the background's signed answer (RuntimeError if it failed)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(timeout_s)
            sock.sendto(
                _signed(self.key, CREDENTIALS + json.dumps(request).encode()),
                ("127.0.0.1", self.relay_port),
            )
            answer = _verified(self.key, sock.recv(65536))
        if answer != b"ok":
            raise RuntimeError((answer or b"an unsigned answer").decode(errors="replace"))


def _signed(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest() + message


def _verified(key: bytes, datagram: bytes) -> bytes | None:
    tag, message = datagram[:32], datagram[32:]
    good = hmac.new(key, message, hashlib.sha256).digest()
    return message if hmac.compare_digest(tag, good) else None


def api_worker_app(settings: Settings, relayed: RelayedDeviceService | None):
    """An API worker's application (uvicorn calls this in each worker process)."""
    from .app import create_app
    from .logs import configure

    configure(settings.log_level, settings.log_format)  # a spawned process starts bare
    app = create_app(
        settings.model_copy(update={"devices": False, "jobs": False, "auto_migrate": False})
    )
    app.state.device_service = relayed  # the lifespan sets it only with devices on
    return app


class _Relay(asyncio.DatagramProtocol):
    def __init__(self, service: Any, key: bytes) -> None:
        self.service, self.key = service, key
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        message = _verified(self.key, data)
        if message == WAKE:
            self.service.wake()
        elif message is not None and message.startswith(CREDENTIALS):
            request = json.loads(message[len(CREDENTIALS) :])
            # Waits for the broker: off the event loop, answered when done.
            done = asyncio.get_running_loop().run_in_executor(None, self._credential, request)
            done.add_done_callback(lambda f, addr=addr: self._answer(f, addr))
        elif message is None:
            log.warning("the device relay dropped an unsigned datagram from %s", addr)

    def _credential(self, request: dict) -> None:
        if request["do"] == "grant":
            self.service.credential_issued(request["username"], request["password"])
        else:
            self.service.credential_revoked(request["username"])

    def _answer(self, done: asyncio.Future, addr: Any) -> None:
        error = done.exception()
        answer = b"ok" if error is None else f"{type(error).__name__}: {error}".encode()[:500]
        if self.transport is not None:
            self.transport.sendto(_signed(self.key, answer), addr)


async def _background(settings: Settings, ready: Connection) -> None:
    from .app import create_app

    app = create_app(settings.model_copy(update={"auto_migrate": False}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with app.router.lifespan_context(app):
        service = app.state.device_service
        relay_port = 0
        transport = None
        if service is not None:
            key = secrets.token_bytes(32)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Relay(service, key), local_addr=("127.0.0.1", 0)
            )
            relay_port = transport.get_extra_info("sockname")[1]
            relayed = RelayedDeviceService(service.endpoint, service.mode, relay_port, key)
            relayed.alternates = list(getattr(service, "alternates", []))
            ready.send(relayed)
        else:
            ready.send(None)
        ready.close()
        try:
            await stop.wait()
        finally:
            if transport is not None:
                transport.close()


def run_background(settings: Settings, ready: Connection, log_level: str) -> None:
    """The background process's main: runs until SIGINT or SIGTERM. Sends the
    `RelayedDeviceService` for the workers (None with devices off) once it runs."""
    with contextlib.suppress(OSError):  # `ps -o comm` tells it from the workers (Linux)
        Path("/proc/self/comm").write_text(BACKGROUND_NAME)
    from .logs import configure

    configure(log_level, settings.log_format)
    asyncio.run(_background(settings, ready))
