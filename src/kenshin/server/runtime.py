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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
from sqlalchemy import Engine, delete, exc, insert, select, update

from kenshin.ports import require_free_tcp_port
from kenshin.wire import encode_publish
from kenshin.wire.topics import Kind

from . import ingest, metrics, wakeups
from . import schema as s
from .broker import dynsec, mqtt_ack
from .broker.access import Account, Principal, PrincipalKind, StaticCredentials, verify_password
from .broker.access import hash_password as mqtt_hash
from .broker.control import RESPONSE_TOPIC, DynsecControl
from .devices import commands, config, status
from .events import record_event
from .leader import Leadership
from .security import CredentialBox
from .supervisor import Supervisor

log = logging.getLogger(__name__)
SERVICE_USER = "kenshin-service"
GROUP_MAX = 2000  # messages committed together at most
REPUSH_S = 20.0  # a gateway active this long after its settings went out without them
FOLLOWER_RETRY_S = 5.0  # an ingest process that does not push tries for the lock this often
NODE_LEASE_S = 90.0  # an ingest node name whose holder is silent this long is free
HOLDER = f"{socket.gethostname()}:{os.getpid()}"
# What says the database (or the way to it) is in trouble, rather than the message: the
# message is held and tried again, never quarantined for it.
Arrival = tuple[str, bytes, Callable[[], Any]]  # topic, payload, acknowledge after the commit
UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, psycopg.OperationalError,
               psycopg.InterfaceError)  # fmt: skip


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
            stored = conn.execute(
                select(s.gateways.c.mqtt_password_hash).where(
                    s.gateways.c.mqtt_username == username
                )
            ).scalar()
        if stored and verify_password(password, stored):
            return Principal(username, PrincipalKind.DEVICE)
        return None


@dataclass
class BrokerEndpoint:
    host: str
    port: int
    tls: bool = False


@dataclass
class DeviceService:
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

    async def _start_mosquitto(self, service: StaticCredentials) -> None:
        from .broker.mosquitto import (
            MosquittoListener,
            MosquittoProcess,
            directory_lock,
            stop_orphan,
        )

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
        from .broker.mosquitto import write_mosquitto_config

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

    async def _consume(self, source: AsyncIterator[Arrival]) -> None:
        """Two stages: messages are taken off the connection as they arrive while the
        previous group is decoded and written in a thread; then everything that arrived
        meanwhile goes into one transaction (one commit for many is most of the ingest's
        speed under load) and is acknowledged after its commit. Decoding stays off this
        loop: in one process with the embedded broker and the web server (the demo), a
        backfill's worth of decoding here would stall them all."""
        arrived: list[tuple[Callable, str, bytes, float]] = []
        waiting = asyncio.Event()

        async def receive() -> None:
            async for topic, payload, ack in source:
                now = time.monotonic()
                arrived.append((ack, topic, payload, now))
                if self._oldest_unacked is None:
                    self._oldest_unacked = now
                waiting.set()

        async def commit() -> None:
            while True:
                await waiting.wait()
                group = arrived[:GROUP_MAX]
                del arrived[:GROUP_MAX]
                if not arrived:
                    waiting.clear()
                work = [(topic, payload) for _, topic, payload, _ in group]
                delay = 0.5
                # The database is down: hold these messages (unacknowledged) and try
                # again, rather than move on; MQTT 3.1.1 redelivers unacked messages only
                # at reconnection.
                while (outcomes := await asyncio.to_thread(self.commit_group, work)) is None:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 15.0)
                for (ack, *_), outcome in zip(group, outcomes, strict=True):
                    done = ack()  # committed (or quarantined)
                    if done is not None:
                        await done
                    self._count(outcome.kind)
                    metrics.ingested(outcome)
                self._oldest_unacked = arrived[0][3] if arrived else None

        async with asyncio.TaskGroup() as stages:
            stages.create_task(receive())
            stages.create_task(commit())

    def commit_group(
        self, work: list[tuple[str, bytes]], decoded: list[ingest.Decoded] | None = None
    ) -> list[ingest.Outcome] | None:
        """All in one transaction; if that fails, each alone (so one message that breaks
        its transaction holds back only itself). None: the database is unreachable (the
        ones committed so far come again with the rest: redelivery is idempotent)."""
        if len(work) > 1:
            if decoded is None:  # before the transaction begins: it holds locks
                decoded = [ingest.decode(topic, payload) for topic, payload in work]
            try:
                with self.engine.begin() as conn:
                    outcomes = ingest.handle_group(conn, work, decoded)
                self._count("groups")
                return outcomes
            except Exception as err:
                log.info("a group of %d failed (%s); committing one by one", len(work), err)
        outcomes = []
        for topic, payload in work:
            outcome = self._commit(topic, payload)
            if outcome is None:
                return None
            outcomes.append(outcome)
        return outcomes

    def _commit(self, topic: str, payload: bytes) -> ingest.Outcome | None:
        try:
            with self.engine.begin() as conn:
                return ingest.handle(conn, topic, payload)
        except UNAVAILABLE as err:  # no ack: the caller tries again
            return self._unavailable(topic, err)
        except Exception as err:  # this message's own trouble: it would fail forever
            reason = f"could not be stored: {type(err).__name__}: {err}"[:500]
        try:
            with self.engine.begin() as conn:
                outcome = ingest.quarantine(conn, topic, payload, reason)
        except Exception as err:
            return self._unavailable(topic, err)
        log.warning("ingest quarantined a message on %s: %s", topic, reason)
        return outcome

    def _unavailable(self, topic: str, err: Exception) -> None:
        log.warning("ingest could not commit a message on %s: %s", topic, err)
        self._count("ingest_errors")
        return None

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def _push_loop(self, client: aiomqtt.Client) -> None:
        """Settings and commands out to gateways, by one ingest process of many (the
        holder of the pushers' lock, server/leader.py): the others stand by and take over
        within FOLLOWER_RETRY_S of its death."""
        last_sweep = 0.0
        while True:
            self._wake.clear()  # before looking: a change made while we push wakes us again
            outbox, leading = [], False
            try:
                leading = await asyncio.to_thread(self._pushing.held)
                if leading:
                    outbox = await asyncio.to_thread(self._prepare_pushes)
                else:
                    self._published.clear()  # another pushes; taking over, we push all anew
            except UNAVAILABLE as err:  # the database is down: try again at the next round
                log.warning("cannot prepare settings and commands to push: %s", err)
            for topic, payload, retain, command_id, gateway_id, published in outbox:
                await client.publish(topic, payload, qos=1, retain=retain)
                if command_id is not None:
                    await asyncio.to_thread(self._mark_sent, command_id)
                if published is not None:
                    self._published[gateway_id] = published
                    self._pushed_at[gateway_id] = s.utcnow()
            if time.monotonic() - last_sweep > self.sweep_every_s:
                last_sweep = time.monotonic()
                try:
                    await asyncio.to_thread(self._sweep)
                except Exception as err:
                    log.warning("status sweep failed: %s", err)
            with contextlib.suppress(TimeoutError):
                wait_s = self.sweep_every_s if leading else FOLLOWER_RETRY_S
                await asyncio.wait_for(self._wake.wait(), wait_s)

    def _prepare_pushes(self) -> list[tuple]:
        """Settings whose effective version or seal key differs from what we retained,
        sealed for the wire, and pending commands, as (topic, payload, retain, command id,
        gateway id, (version, seal key)). Each gateway
        and each command is prepared on its own: one that cannot be (a value the wire
        refuses, a key that does not open its credentials) is skipped with an event, and
        every other gateway of every tenant still gets its settings and commands."""
        out = []
        now_s = int(time.time())
        with self.engine.connect() as reading:  # one connection for the round's reads
            gateways = reading.execute(
                select(s.gateways).where(
                    s.gateways.c.tenant_id.is_not(None), s.gateways.c.mqtt_username.is_not(None)
                )
            ).all()
            pending = commands.pending(reading)
            reading.rollback()
            out += self._prepare_settings(reading, gateways, now_s)
        for row, serial in pending:
            try:
                topic, payload = encode_publish(commands.as_message(row), serial)
            except Exception as err:
                with self.engine.begin() as conn:
                    commands.fail(conn, row.id, f"cannot be sent: {err}")
                continue
            out.append((topic, payload, False, row.id, row.gateway_id, None))
        return out

    def _prepare_settings(self, reading: Any, gateways: list, now_s: int) -> list[tuple]:
        """Each gateway's settings to retain, where they changed; one that fails is
        skipped (its reads rolled back, so the connection serves the next one)."""
        out = []
        versions = config.effective_versions(reading)  # one query, not one per gateway
        reading.rollback()
        for gateway in gateways:
            # A restarted agent enrolls with a new key: the same version, sealed again.
            known = (versions.get(gateway.id, 0), gateway.seal_public_key)
            if self._published.get(gateway.id) == known and not self._missed(gateway, known[0]):
                continue
            try:
                settings = config.effective_settings(reading, gateway, self.box, now_s=now_s)
                reading.rollback()
                if settings is None:
                    continue
                published = (settings.version, gateway.seal_public_key)
                with self.engine.begin() as conn:
                    settings = config.for_wire(conn, gateway, settings)
                topic, payload = encode_publish(settings, gateway.serial)
            except UNAVAILABLE:
                raise
            except Exception as err:
                reading.rollback()
                self._cannot_push(gateway, "settings", err)
                continue
            out.append((topic, payload, True, None, gateway.id, published))
        return out

    def _missed(self, gateway: Any, version: int) -> bool:
        """Heard from well after our push, yet still on other settings: the retained copy
        did not reach it (a cluster's node keeps retained messages to itself, and the
        gateway connected to another). Pushed again, once per REPUSH_S of its activity."""
        pushed = self._pushed_at.get(gateway.id)
        return (
            pushed is not None
            and gateway.last_seen_at is not None
            and gateway.settings_version_applied != version
            and (gateway.last_seen_at - pushed).total_seconds() > REPUSH_S
        )

    def _cannot_push(self, gateway: Any, what: str, err: Exception) -> None:
        """Recorded once per gateway and cause, not at every round of the push loop."""
        cause = f"{type(err).__name__}: {err}"[:300]
        if self._unpushable.get(gateway.id) == cause:
            return
        self._unpushable[gateway.id] = cause
        log.warning("gateway %s: its %s cannot be pushed: %s", gateway.serial, what, cause)
        with self.engine.begin() as conn:
            record_event(
                conn,
                tenant_id=gateway.tenant_id,
                gateway_id=gateway.id,
                code="settings_not_pushed",
                severity="error",
                detail={"error": cause, "action": "correct this gateway's settings"},
            )

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

    def _mark_sent(self, command_id: int) -> None:
        with self.engine.begin() as conn:
            commands.mark_sent(conn, command_id)

    def _sweep(self) -> None:
        self._hold_node_name()
        with self.engine.begin() as conn:
            status.sweep_silent(conn, self.heartbeat_s)
            commands.expire(conn)


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
