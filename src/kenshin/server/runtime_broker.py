"""The broker side of `DeviceService` (`runtime.py`): who may connect to the embedded
broker (`DatabaseCredentials`), a managed Mosquitto (its directory, port, files, restart),
and a gateway's credential handed to or taken from the broker as it is issued or revoked.

Separate from `runtime.py` so the broker credentials plumbing is in one place, apart from
the ingest and the pushers that only use the broker's connection. A mixin: it uses the
service's `engine`, `host`, `port`, `mode`, `_broker`, `_control` and `_loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from . import schema as s
from .broker import dynsec
from .broker.access import Account, Principal, PrincipalKind, StaticCredentials, verify_password
from .devices.enrollment import password_hash

log = logging.getLogger("kenshin.server.runtime")  # its lines keep the name they had


class DatabaseCredentials:
    """The broker asks this who may connect: gateways by their enrolled MQTT password
    (hash in the database), the server's own service account from memory."""

    def __init__(self, engine: Engine, service: StaticCredentials):
        self.engine, self.service = engine, service

    async def authenticate(self, username: str, password: str) -> Principal | None:
        found = await self.service.authenticate(username, password)
        if found is not None:
            return found
        return await asyncio.to_thread(self._gateway, username, password)

    def _gateway(self, username: str, password: str) -> Principal | None:
        with self.engine.connect() as conn:
            stored = password_hash(conn, username)
        if stored and verify_password(password, stored):
            return Principal(username, PrincipalKind.DEVICE)
        return None


@dataclass
class BrokerEndpoint:
    host: str
    port: int
    tls: bool = False


class BrokerMixin:
    async def _start_mosquitto(self, service: StaticCredentials) -> None:
        from .broker.mosquitto import MosquittoProcess, directory_lock, stop_orphan
        from .broker.mosquitto_config import MosquittoListener

        if self.mosquitto_dir is not None:  # persistence survives a restart of the server
            self._mosquitto_dir = Path(self.mosquitto_dir).resolve()
            self._mosquitto_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._mosquitto_dir = Path(tempfile.mkdtemp(prefix="kenshin-mosquitto-"))
        self._dir_lock = directory_lock(self._mosquitto_dir)
        orphan = await stop_orphan(self._mosquitto_dir)
        if orphan is not None:
            log.warning("stopped Mosquitto pid %d that an earlier server left running", orphan)
        port = self._mosquitto_port()
        self._mosquitto_listener = MosquittoListener(port, host=self.host)
        self._service_accounts = service
        self._write_mosquitto_files()
        self._broker = MosquittoProcess(self._mosquitto_dir, port, host=self.host)
        await self._broker.start()
        self.endpoint = BrokerEndpoint(self.host, port)

    def _mosquitto_port(self) -> int:
        """The configured port; port 0 picks a free one once and keeps it in the broker's
        directory, so a restarted server serves the port its gateways were told."""
        if self.port:
            return self.port
        remembered = self._mosquitto_dir / "port"
        with contextlib.suppress(OSError, ValueError):
            return int(remembered.read_text())
        from kenshin.ports import free_tcp_port

        port = free_tcp_port(self.host)
        remembered.write_text(f"{port}\n")
        return port

    async def _keep_mosquitto(self) -> None:
        """Supervised: (re)start Mosquitto when it is not running, then wait on it; its
        exit is a failure the supervisor answers with a restart."""
        if not self._broker.running:
            self._write_mosquitto_files()  # gateways may have enrolled meanwhile
            await self._broker.start()
            log.warning("Mosquitto restarted on %s:%d", self.host, self._broker.port)
        code = await self._broker.wait()
        raise RuntimeError(f"mosquitto exited with code {code}")

    def _write_mosquitto_files(self) -> None:
        from .broker.mosquitto_config import write_mosquitto_config

        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.gateways.c.mqtt_username, s.gateways.c.mqtt_password_hash).where(
                    s.gateways.c.mqtt_password_hash.is_not(None)
                )
            ).all()
        accounts = [Account(u, h, PrincipalKind.DEVICE) for u, h in rows]
        accounts += list(self._service_accounts.accounts())
        user = None
        if os.geteuid() == 0:  # mosquitto started as root drops privileges: keep our user
            import pwd

            user = pwd.getpwuid(os.geteuid()).pw_name
        write_mosquitto_config(
            self._mosquitto_dir,
            accounts,
            [self._mosquitto_listener],
            user=user,
            dynamic_security=True,
        )

    def credential_issued(self, username: str, password: str, timeout_s: float = 10.0) -> None:
        """A gateway enrolled with a new MQTT password (already committed). The embedded
        broker asks the database; a managed Mosquitto is told this one credential through
        its dynamic-security API, and this returns once it has taken it, so the gateway
        may connect at once. Thread-safe (called from request handlers)."""
        self._control_threadsafe(dynsec.grant_device(username, password), timeout_s)

    def credential_revoked(self, username: str, timeout_s: float = 10.0) -> None:
        """The gateway's MQTT access ends now: its broker client is deleted (dynamic
        security) or its connections closed (RabbitMQ), which ends its session."""
        self._control_threadsafe(dynsec.revoke_device(username), timeout_s)
        if self.management_url:  # RabbitMQ: its open connections end too
            from .broker.rabbitmq import close_connections_soon

            close_connections_soon(self.management_url, username, timeout_s)

    def _control_threadsafe(self, commands: list[dict], timeout_s: float) -> None:
        if not self.dynsec:
            return  # the embedded broker and an HTTP-auth broker ask the database
        if self.mode == "mosquitto" and not (self._broker and self._broker.running):
            return  # the supervisor restarts it from the database, which has the change
        future = asyncio.run_coroutine_threadsafe(
            self._control.send(commands, timeout_s), self._loop
        )
        future.result(timeout_s + 1)
