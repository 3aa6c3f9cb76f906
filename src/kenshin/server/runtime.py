"""The server's MQTT side: the broker (embedded, or a managed Mosquitto), the ingest
subscriber, and the pushers of settings and commands. Runs in the app's lifespan.

The ingest acknowledges each message to the broker only after its database transaction
committed (paho's manual acknowledgement under aiomqtt), so nothing is lost between the
broker and the database. Messages that arrive while a transaction runs wait, and go
together into the next one (up to `GROUP_MAX`): one commit for many is most of the
ingest's speed under load, and adds no delay when there is none. A group that fails is
committed again one message at a time, so a message that cannot be stored (the database
refuses it, or the ingest trips over it) is quarantined alone and the others go through.

Where the broker has shared subscriptions (Mosquitto), several server processes split the
readings with `$share/ingest/k/+/d`; the embedded amqtt broker has none, so a single
process subscribes plainly there.

`DeviceService` is assembled here from its parts: this module starts, connects,
supervises and reports it (and holds its ingest node name); `runtime_ingest.py` is what
comes in, `runtime_push.py` what goes out (settings, commands, the sweep), and
`runtime_broker.py` the broker's side (who may connect, a managed Mosquitto, credentials
issued and revoked). `device_service` and `broker_link` build it from the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from sqlalchemy import Engine, delete, insert, select, update

from kenshin.ports import require_free_tcp_port
from kenshin.wire.topics import Kind

from . import schema as s
from . import wakeups
from .broker import mqtt_ack
from .broker.access import Account, PrincipalKind, StaticCredentials
from .broker.access import hash_password as mqtt_hash
from .broker.control import RESPONSE_TOPIC, DynsecControl
from .leader import Leadership
from .runtime_broker import BrokerEndpoint, BrokerMixin, DatabaseCredentials
from .runtime_ingest import GROUP_MAX, Arrival, IngestMixin
from .runtime_push import PushMixin
from .security import CredentialBox
from .supervisor import Supervisor

log = logging.getLogger(__name__)
SERVICE_USER = "kenshin-service"
NODE_LEASE_S = 90.0  # an ingest node name whose holder is silent this long is free
HOLDER = f"{socket.gethostname()}:{os.getpid()}"


class NodeNameTaken(RuntimeError):
    """Another live server process uses this ingest node name."""


def _holder_alive(holder: str) -> bool:
    """A holder on this host is alive if its pid is; one elsewhere is taken at its word."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class DeviceService(IngestMixin, PushMixin, BrokerMixin):
    engine: Engine
    box: CredentialBox
    mode: str = "embedded"  # embedded | mosquitto (a managed child process)
    host: str = "127.0.0.1"
    port: int = 0
    heartbeat_s: float = 1800.0
    sweep_every_s: float = 30.0
    endpoint: BrokerEndpoint | None = None
    counters: dict[str, int] = field(default_factory=dict)
    _service_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)  # the ingest listens
    # gateway id → (settings version, seal key) retained: a new key needs a new seal
    _published: dict[int, tuple] = field(default_factory=dict)
    _unpushable: dict[int, str] = field(default_factory=dict)  # gateway id → why, told once
    _broker: Any = None
    _client: aiomqtt.Client | None = None
    _mosquitto_dir: Path | None = None
    _dir_lock: int | None = None
    node_name: str = "1"
    broker_auth: str = "dynsec"  # an external broker's: dynsec ($CONTROL) | http (asks us)
    mosquitto_dir: Path | None = None
    service_login: tuple[str, str] | None = None  # external broker: the service's account
    supervisor: Supervisor = field(default_factory=Supervisor)
    _oldest_unacked: float | None = None  # monotonic arrival of the oldest message not acked
    _control: DynsecControl = field(default_factory=DynsecControl)
    _pushing: Leadership = field(init=False)
    alternates: list[BrokerEndpoint] = field(default_factory=list)  # a cluster's other nodes
    amqp_urls: list[str] = field(default_factory=list)  # its replicated ingest queue
    management_url: str | None = None  # its management API (revoking ends connections)
    _node_index: int = 0
    _pushed_at: dict[int, Any] = field(default_factory=dict)  # gateway id → settings pushed

    def __post_init__(self) -> None:
        self._pushing = Leadership(self.engine, "pushers")

    @property
    def dynsec(self) -> bool:
        """Credentials go to the broker through Mosquitto's dynamic-security API."""
        return self.mode == "mosquitto" or (
            self.mode == "external" and self.broker_auth == "dynsec"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the broker (a taken port is an error that names its holder: gateways were
        told this port), then supervise it and the service client."""
        service = StaticCredentials(
            [Account(SERVICE_USER, mqtt_hash(self._service_password), PrincipalKind.SERVICE)]
        )
        if self.mode == "embedded":
            from .broker.embedded import EmbeddedBroker

            checker = DatabaseCredentials(self.engine, service)
            if self.port:
                require_free_tcp_port(self.host, self.port, "MQTT")
            self._broker = EmbeddedBroker(checker, host=self.host, port=self.port)
            await self._broker.start()
            self.endpoint = BrokerEndpoint(self.host, self._broker.port)
        elif self.mode == "mosquitto":
            await self._start_mosquitto(service)
            self.supervisor.start("broker", self._keep_mosquitto)
        elif self.mode == "external":
            assert self.endpoint is not None and self.service_login is not None
        else:
            raise ValueError(f"unknown broker mode {self.mode!r}")
        log.info("MQTT broker (%s) on %s:%d", self.mode, self.endpoint.host, self.endpoint.port)
        self._loop = asyncio.get_running_loop()
        self.supervisor.start("ingest", self._serve_once)
        if self.engine.dialect.name == "postgresql":  # API-only processes tell us of changes
            self.supervisor.start("wakeups", lambda: wakeups.listen(self.engine, self._wake))

    async def stop(self) -> None:
        await self.supervisor.stop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._pushing.release)
        with contextlib.suppress(Exception):  # the database may be gone: the lease expires
            await asyncio.to_thread(self._release_node_name)
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.stop()
        if self._dir_lock is not None:
            os.close(self._dir_lock)
            self._dir_lock = None

    def health(self, max_lag_s: float) -> dict[str, dict]:
        """What `/readyz` reports of the MQTT side: each part ok or not, with why."""
        children = self.supervisor.report()
        parts: dict[str, dict] = {}
        if self.mode == "mosquitto":
            running = self._broker is not None and self._broker.running
            parts["broker"] = {
                "ok": running,
                **({} if running else {"reason": "mosquitto is not running"}),
                **children.get("broker", {}),
            }
        ingest = children.get("ingest", {})
        connected = self.subscribed.is_set()
        parts["ingest"] = {
            "ok": connected,
            **({} if connected else {"reason": "not connected to the broker"}),
            **ingest,
        }
        lag = self.ingest_lag_s()
        parts["ingest_lag"] = {"ok": lag <= max_lag_s, "lag_s": round(lag, 1), "max_s": max_lag_s}
        if lag > max_lag_s:
            parts["ingest_lag"]["reason"] = "readings wait longer than allowed to be stored"
        return parts

    def ingest_lag_s(self) -> float:
        """How long the oldest message taken from the broker has waited to be committed."""
        oldest = self._oldest_unacked
        return 0.0 if oldest is None else time.monotonic() - oldest

    # -- Mosquitto, managed ----------------------------------------------------------------

    # -- the service client ------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed (settings, a meter, a command): push now. Thread-safe."""
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self._wake.set)

    async def _serve_once(self) -> None:
        """One session of the service client (supervised: a lost connection or a bug ends
        it, and the supervisor starts another after a jittered back-off, on the next of
        the broker's nodes when it has several)."""
        # An external broker knows the account we were configured with; a broker we run
        # ourselves, the one made for this process.
        username, password = self.service_login or (SERVICE_USER, self._service_password)
        await asyncio.to_thread(self._hold_node_name)
        nodes = [self.endpoint, *self.alternates]
        endpoint = nodes[self._node_index % len(nodes)]
        try:
            async with mqtt_ack.manual(  # acknowledge only after the commit (module doc)
                aiomqtt.Client(
                    endpoint.host,
                    endpoint.port,
                    username=username,
                    password=password,
                    # A stable id: after a restart this session's queue (messages that arrived
                    # while we were down) is ours again.
                    identifier=f"kenshin-ingest-{self.node_name}",
                    clean_session=False,
                    tls_params=aiomqtt.TLSParameters() if endpoint.tls else None,  # mqtts://
                )
            ) as client:
                self._client = client
                if self.amqp_urls:  # the uplink comes from the cluster's replicated queue
                    source = self._from_queue()
                else:
                    source = self._from_mqtt(client)
                    # N ingest workers split the fleet's messages (the embedded broker, one
                    # process by design, has no shared subscriptions).
                    shared = "" if self.mode == "embedded" else "$share/ingest/"
                    for kind in (Kind.READINGS, Kind.STATUS, Kind.EVENT, Kind.RESULT):
                        await client.subscribe(f"{shared}k/+/{kind.value}", qos=1)
                    self.subscribed.set()
                if self.dynsec:  # the answers of its dynamic-security API
                    await client.subscribe(RESPONSE_TOPIC, qos=0)
                    self._control.attach(client)
                self._published.clear()  # the broker may have lost retained settings
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._consume(source))
                        group.create_task(self._push_loop(client))
                except* Exception as errors:  # the first cause, not the group, in the log
                    raise errors.exceptions[0] from None
        except Exception:
            self._node_index += 1  # the next node of a cluster, at the next session
            raise
        finally:
            self._client = None
            self._control.detach()
            self._oldest_unacked = None  # unacked messages come again on the next session
            self.subscribed.clear()

    async def _from_mqtt(self, client: aiomqtt.Client) -> AsyncIterator[Arrival]:
        async for message in client.messages:
            topic, payload = str(message.topic), bytes(message.payload)
            if topic == RESPONSE_TOPIC:
                self._control.answered(payload)
                continue
            yield topic, payload, lambda message=message: mqtt_ack.ack(client, message)

    async def _from_queue(self) -> AsyncIterator[Arrival]:
        from .broker.rabbitmq import AmqpSource

        async for delivery in AmqpSource(self.amqp_urls, GROUP_MAX).deliveries(self.subscribed.set):
            yield delivery.topic, delivery.payload, delivery.ack

    def _hold_node_name(self) -> None:
        """This process's claim on its ingest session name, renewed by the sweep. Two
        processes under one name would take the session from each other at every
        connect; the second one's ingest waits (and /readyz says why) until the first has
        been gone for NODE_LEASE_S, or at once if it was a process of this host that died."""
        now = s.utcnow()
        name = self.node_name
        with self.engine.begin() as conn:
            row = conn.execute(
                select(s.ingest_nodes).where(s.ingest_nodes.c.node_name == name)
            ).first()
            if row is None:
                conn.execute(
                    insert(s.ingest_nodes).values(node_name=name, holder=HOLDER, heartbeat_at=now)
                )
                return
            fresh = (now - row.heartbeat_at).total_seconds() < NODE_LEASE_S
            if row.holder != HOLDER and fresh and _holder_alive(row.holder):
                raise NodeNameTaken(
                    f"ingest node name {name!r} is held by {row.holder}: give each ingest "
                    "process its own node_name (KENSHIN_NODE_NAME)"
                )
            conn.execute(
                update(s.ingest_nodes)
                .where(s.ingest_nodes.c.node_name == name)
                .values(holder=HOLDER, heartbeat_at=now)
            )

    def _release_node_name(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(s.ingest_nodes).where(
                    s.ingest_nodes.c.node_name == self.node_name, s.ingest_nodes.c.holder == HOLDER
                )
            )


def device_service(settings: Any, engine: Engine, box: CredentialBox) -> DeviceService:
    """The MQTT side as the server's settings describe it."""
    external = settings.broker_endpoint
    if external is None:
        return DeviceService(
            engine,
            box,
            mode=settings.broker,
            node_name=settings.node_name,
            mosquitto_dir=settings.mosquitto_dir,
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            heartbeat_s=settings.heartbeat_s,
        )
    endpoint, login, alternates = _external(settings)
    return DeviceService(
        engine,
        box,
        mode="external",
        broker_auth=settings.broker_auth,
        alternates=alternates,
        amqp_urls=[u.strip() for u in (settings.broker_amqp or "").split(",") if u.strip()],
        management_url=settings.broker_management,
        node_name=settings.node_name,
        heartbeat_s=settings.heartbeat_s,
        endpoint=endpoint,
        service_login=login,
    )


def _external(settings: Any) -> tuple[BrokerEndpoint, tuple[str, str], list[BrokerEndpoint]]:
    """An external broker's endpoint, the service's login on it, and its other nodes."""
    external = settings.broker_endpoint
    endpoint = BrokerEndpoint(external.host, external.port, external.tls)
    login = (external.username or SERVICE_USER, external.password or "")
    return (
        endpoint,
        login,
        [BrokerEndpoint(h, p, external.tls) for h, p in settings.broker_alternates],
    )


def broker_link(settings: Any, engine: Engine):
    """An API-only process's link to the external broker (see broker/link.py)."""
    from .broker.link import BrokerLink

    endpoint, login, alternates = _external(settings)
    return BrokerLink(
        engine,
        endpoint,
        settings.broker_auth,
        login,
        alternates=alternates,
        management_url=settings.broker_management,
    )
