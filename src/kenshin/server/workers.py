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
loopback datagram, and knows the broker's endpoint for enrolment answers. A lost datagram
costs no more than a delay: the pushers look again every 30 s anyway.

Why not the parent for the background work: uvicorn's supervisor owns the parent's main
thread and signals; a process of its own also keeps a stuck job from stalling restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass
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

    endpoint: Any  # the broker gateways are told of (runtime.BrokerEndpoint), or None
    mode: str
    relay_port: int

    def __getstate__(self) -> dict[str, Any]:  # pickled to the workers, without a socket
        return {k: v for k, v in self.__dict__.items() if k != "_sock"}

    def _send(self, what: bytes) -> None:
        sock = self.__dict__.get("_sock")
        if sock is None:
            sock = self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
        with contextlib.suppress(OSError):  # a full buffer: the pushers' own round comes
            sock.sendto(what, ("127.0.0.1", self.relay_port))

    def wake(self) -> None:
        self._send(WAKE)

    def credentials_changed(self) -> None:
        self._send(CREDENTIALS)


def api_worker_app(settings: Settings, relayed: RelayedDeviceService | None):
    """An API worker's application (uvicorn calls this in each worker process)."""
    from .app import create_app

    app = create_app(
        settings.model_copy(update={"devices": False, "jobs": False, "auto_migrate": False})
    )
    app.state.device_service = relayed  # the lifespan sets it only with devices on
    return app


class _Relay(asyncio.DatagramProtocol):
    def __init__(self, service: Any) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data == WAKE:
            self.service.wake()
        elif data == CREDENTIALS:  # rewrites Mosquitto's files: off the event loop
            asyncio.get_running_loop().run_in_executor(None, self.service.credentials_changed)


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
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Relay(service), local_addr=("127.0.0.1", 0)
            )
            relay_port = transport.get_extra_info("sockname")[1]
            relayed = RelayedDeviceService(service.endpoint, service.mode, relay_port)
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
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    asyncio.run(_background(settings, ready))
