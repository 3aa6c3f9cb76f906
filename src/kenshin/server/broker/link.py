"""The MQTT side as an API-only process sees it (``kenshin server run --role api``).

Such a process runs no broker, ingest or pushers; it still has three things to do with
the broker, and this is all of it:

* tell enrolling gateways where the broker is (`endpoint`);
* make a new or revoked gateway credential take effect before answering: on Mosquitto with
  the dynamic-security plugin, a ``$CONTROL`` message over a small connection of this
  process's own (`DynsecControl`); on a broker that asks the server (RabbitMQ's HTTP auth
  backend) nothing, the database already has it;
* wake the pushers in the ingest processes (`wakeups.notify`, PostgreSQL NOTIFY).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from sqlalchemy import Engine

from .. import wakeups
from ..supervisor import Supervisor
from . import dynsec
from .control import RESPONSE_TOPIC, DynsecControl

__all__ = ["BrokerLink"]

log = logging.getLogger(__name__)


@dataclass
class BrokerLink:
    engine: Engine
    endpoint: Any  # runtime.BrokerEndpoint: told to gateways
    broker_auth: str  # dynsec | http
    login: tuple[str, str]  # the service account on the broker
    alternates: list = field(default_factory=list)  # a cluster's other nodes (BrokerEndpoint)
    management_url: str | None = None  # RabbitMQ's: revoking closes connections
    mode: str = "external"
    supervisor: Supervisor = field(default_factory=Supervisor)
    _control: DynsecControl = field(default_factory=DynsecControl)
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.broker_auth == "dynsec":
            self.supervisor.start("broker-control", self._serve_once)

    async def stop(self) -> None:
        await self.supervisor.stop()

    async def _serve_once(self) -> None:
        username, password = self.login
        try:
            async with aiomqtt.Client(
                self.endpoint.host,
                self.endpoint.port,
                username=username,
                password=password,
                identifier=f"kenshin-api-{secrets.token_hex(6)}",  # one per process and session
                clean_session=True,
                tls_params=aiomqtt.TLSParameters() if self.endpoint.tls else None,
            ) as client:
                await client.subscribe(RESPONSE_TOPIC, qos=0)
                self._control.attach(client)
                self._connected.set()
                async for message in client.messages:
                    self._control.answered(bytes(message.payload))
        finally:
            self._control.detach()
            self._connected.clear()

    def health(self, max_lag_s: float) -> dict[str, dict]:
        if self.broker_auth != "dynsec":
            return {}
        ok = self._connected.is_set()
        part = {"ok": ok, **self.supervisor.report().get("broker-control", {})}
        if not ok:
            part["reason"] = "not connected to the broker's control API"
        return {"broker_control": part}

    def wake(self) -> None:
        wakeups.notify(self.engine)

    def credential_issued(self, username: str, password: str, timeout_s: float = 10.0) -> None:
        self._control_threadsafe(dynsec.grant_device(username, password), timeout_s)

    def credential_revoked(self, username: str, timeout_s: float = 10.0) -> None:
        self._control_threadsafe(dynsec.revoke_device(username), timeout_s)
        if self.management_url:  # RabbitMQ: its open connections end too
            from .rabbitmq import close_connections_soon

            close_connections_soon(self.management_url, username, timeout_s)

    def _control_threadsafe(self, commands: list[dict], timeout_s: float) -> None:
        if self.broker_auth != "dynsec":
            return  # the broker asks the database
        future = asyncio.run_coroutine_threadsafe(
            self._control.send(commands, timeout_s), self._loop
        )
        future.result(timeout_s + 1)
