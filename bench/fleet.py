"""A fleet against the real server: `.venv/bin/python bench/fleet.py --gateways 5000`.

`kenshin server run` (PostgreSQL, jobs off; its managed Mosquitto with the dynamic-security
plugin, or a RabbitMQ cluster) in a process of its own; N simulated gateways in worker
processes, each a lean asyncio MQTT 3.1.1 client speaking the real protocols: HTTP
enrollment with its own Ed25519 identity (challenge, signature, broker credential),
CONNECT with that credential and its serial as client id, its two subscriptions (retained
settings are acknowledged), and real `ReadingsBatch` payloads from `kenshin.wire` at QoS 1,
one per simulated half hour (a 30-minute value and two instant readings).

Phases: enroll all; connect all; steady state (rounds of one batch per gateway); the
fault: Mosquitto restarted (SIGTERM to the managed broker: the server's supervisor starts
it again), or with `--broker rabbitmq` one node of a 3-node RabbitMQ cluster killed
(SIGKILL; the gateways were spread over the nodes and move to the next they were told
of); recovery (gateways reconnect with full jitter, reusing the credential they hold: an
enrollment now would be a bug); two more rounds (`--after`). It prints a table (a column per broker)
and per broker `fleet: gateways N, reconnected in T s, enrollments E, lost L` (lost:
batches the broker acknowledged whose 30-minute value is not stored).

This machine's limit: every process may hold at most 20,000 open files (hard limit, no
CAP_SYS_RESOURCE to raise it), so one Mosquitto process can hold about 19,900 connections;
the gateways are spread over worker processes of at most 9,000 each.

    --gateways N     (default 2000)      --rounds R (steady rounds, default 3)
    --broker B       mosquitto (default), rabbitmq, or both
    --quick          100 gateways, one round: the smoke test's
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench._mqtt import connect_packet, publish_packet, read_packet, subscribe_packet

ADMIN = os.environ.get("KENSHIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 11, 1, tzinfo=UTC)
PER_PROCESS = 9000
ROUND_S = 6.0  # real seconds per simulated half hour
ENROLL_CONCURRENCY = 32


def _serial(n: int) -> str:
    return f"FLEET{n:06d}"


# -- the database, as a retailer's fleet would have it after claiming ---------------------


def _database(name: str) -> str:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return ADMIN.rsplit("/", 1)[0] + "/" + name


def _password(private_key: bytes) -> str:
    """A gateway's broker password when the fleet enrolled before the run (--enrolled)."""
    return hashlib.sha256(b"fleet" + private_key).hexdigest()[:32]


def _fleet(url: str, keys: list[bytes], passwords: list[str] | None = None) -> None:
    """A tenant; per gateway a site, the claimed gateway (its public key) and a meter; with
    `passwords`, each gateway enrolled before: its broker credential, as enrollment stores
    it (the server gives it to the broker when it starts)."""
    from kenshin.server.broker.access import hash_password
    from kenshin.server.db import make_engine, migrate
    from kenshin.server.metering.partitions import ensure_partitions

    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        ensure_partitions(conn, T0)
    engine.dispose()
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO tenants (id, name, kind, created_at) "
                    "VALUES (1, 'Fleet', 'retailer', %s)", (now,))  # fmt: skip
        with cur.copy("COPY sites (id, tenant_id, customer_id, service_code, created_at) "
                      "FROM STDIN") as copy:  # fmt: skip
            for n in range(1, len(keys) + 1):
                copy.write_row((n, 1, f"C{n}", f"pss{n:08d}", now))
        with cur.copy("COPY gateways (id, serial, model, public_key, tenant_id, site_id, "
                      "state, state_since, created_at, mqtt_username, mqtt_password_hash) "
                      "FROM STDIN") as copy:  # fmt: skip
            for n, key in enumerate(keys, 1):
                login = (_serial(n), hash_password(passwords[n - 1])) if passwords else (None,) * 2
                copy.write_row((n, _serial(n), "fleet", key, 1, n, "never_seen", now, now, *login))
        with cur.copy("COPY meters (id, tenant_id, site_id, gateway_id, link, udp_host, "
                      "created_at) FROM STDIN") as copy:  # fmt: skip
            for n in range(1, len(keys) + 1):
                copy.write_row((n, 1, n, n, "udp", "127.0.1.1", now))
        for table in ("tenants", "sites", "gateways", "meters"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))")  # fmt: skip


def _stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM readings_fixed WHERE direction = 0").fetchone()[0]


# -- one lean gateway ----------------------------------------------------------------------


class Refused(Exception):
    """CONNACK 4 or 5: the broker does not know this credential."""


@dataclass
class LeanGateway:
    n: int
    private_key: bytes
    source_ip: str
    credential: tuple[str, int, str, str] | None = None  # host, port, username, password
    nodes: list[tuple[str, int]] = field(default_factory=list)  # the broker's, as told
    attempt: int = 0  # which node to try next (a cluster: spread, then round robin)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.StreamWriter | None = None
    acked: set[int] = field(default_factory=set)  # packet ids (= batch numbers) PUBACKed
    waiting: dict[int, asyncio.Future] = field(default_factory=dict)
    enrollments: int = 0
    admitted_at: float = 0.0  # monotonic: not to connect first before (the server's pacing)
    clean: bool = False  # the session the server told it to use
    next_id: int = 0  # of the packets `publish` sends (30001..60000: the rounds use 1..)
    handling: set = field(default_factory=set)  # on_publish tasks under way

    @property
    def serial(self) -> str:
        return _serial(self.n)

    async def enroll(self, http) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from kenshin.wire.enrollment import b64encode, signed_message

        key = Ed25519PrivateKey.from_private_bytes(self.private_key)
        import httpx

        # A busy server answers 503 or drops a connection: again after a jittered wait.
        for attempt in range(12):
            try:
                challenge = (
                    await http.post("/api/v1/enroll/challenge", json={"serial": self.serial})
                ).json()["challenge"]
                signature = b64encode(key.sign(signed_message(self.serial, challenge)))
                answer = await http.post(
                    "/api/v1/enroll",
                    json={"serial": self.serial, "challenge": challenge, "signature": signature},
                )
                if answer.status_code != 503:
                    break
            except (httpx.TransportError, KeyError, ValueError):
                pass
            await asyncio.sleep(random.uniform(0, min(30, 2**attempt)))
        answer.raise_for_status()
        mqtt = answer.json()["mqtt"]
        self.credential = (mqtt["host"], mqtt["port"], mqtt["username"], mqtt["password"])
        alternates = [(a["host"], a["port"]) for a in mqtt.get("alternates") or ()]
        self.nodes = [(mqtt["host"], mqtt["port"]), *alternates]
        self.attempt = self.n  # a fleet spread over the nodes
        self.enrollments += 1
        self.admitted_at = time.monotonic() + float(mqtt.get("connect_after_s") or 0.0)
        self.clean = mqtt.get("clean_session") is True

    async def connect(self) -> None:
        _, _, username, password = self.credential
        host, port = self.nodes[self.attempt % len(self.nodes)]
        reader, writer = await asyncio.open_connection(host, port, local_addr=(self.source_ip, 0))
        writer.write(
            connect_packet(self.serial, username, password, clean=self.clean, keepalive=900)
        )
        connack = await asyncio.wait_for(reader.readexactly(4), 30)
        if connack[3] in (4, 5):
            writer.close()
            raise Refused(self.serial)
        if connack[3] != 0:
            raise ConnectionError(f"{self.serial}: CONNACK {connack.hex()}")
        downlink = [f"k/{self.serial}/c", f"k/{self.serial}/g"]
        writer.write(subscribe_packet(1, downlink, qos=0 if self.clean else 1))  # as the agent
        self.writer = writer
        self.connected.set()
        asyncio.get_running_loop().create_task(self._read(reader, writer))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                first, body = await read_packet(reader)
                kind = first >> 4
                if kind == 4:  # PUBACK
                    (packet_id,) = struct.unpack("!H", body[:2])
                    self.acked.add(packet_id)
                    future = self.waiting.pop(packet_id, None)
                    if future is not None and not future.done():
                        future.set_result(None)
                elif kind == 3:  # a PUBLISH: settings, commands (QoS 1, or 0 when clean)
                    (topic_length,) = struct.unpack("!H", body[:2])
                    start = 2 + topic_length
                    if (first >> 1) & 3:
                        writer.write(b"\x40\x02" + body[start : start + 2])  # its PUBACK
                        start += 2
                    topic = body[2 : 2 + topic_length].decode()
                    handling = asyncio.create_task(self.on_publish(topic, body[start:]))
                    self.handling.add(handling)  # kept until done: a task may be collected
                    handling.add_done_callback(self.handling.discard)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if self.writer is writer:
                self.connected.clear()
                self.writer = None
            writer.close()

    async def on_publish(self, topic: str, payload: bytes) -> None:
        """A message from the server (settings, a command): a lean gateway only acks it."""

    async def publish(self, topic: str, payload: bytes) -> None:
        """One message at QoS 1, once connected (its PUBACK is not awaited)."""
        await self.connected.wait()
        self.next_id = self.next_id % 30000 + 1
        assert self.writer is not None
        self.writer.write(publish_packet(topic, payload, packet_id=30000 + self.next_id))

    async def keep_connected(self, http) -> None:
        """Reconnect with full jitter whenever the connection is lost; enroll only when the
        broker refuses the credential twice in a row, as the agent does (one refusal may be
        a cluster's auth backend timing out under load)."""
        backoff, refusals = 1.0, 0
        while True:
            await self._disconnected()
            try:
                if self.credential is None:
                    await self.enroll(http)
                await asyncio.sleep(max(0.0, self.admitted_at - time.monotonic()))
                await self.connect()
                backoff, refusals = 1.0, 0
            except Refused:
                refusals += 1
                if refusals >= 2:
                    self.credential, refusals = None, 0
                await asyncio.sleep(random.uniform(0, backoff))
                backoff = min(backoff * 2, 30.0)
            except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
                self.attempt += 1  # the next node of a cluster
                await asyncio.sleep(random.uniform(0, backoff))
                backoff = min(backoff * 2, 30.0)

    async def _disconnected(self) -> None:
        while self.connected.is_set():
            await asyncio.sleep(0.5)

    async def publish_round(self, k: int) -> None:
        """Batch k (its packet id), re-sent after a reconnect until the broker has it."""
        from kenshin.wire import (
            FixedTimeValue,
            InstantSample,
            MeterScale,
            ReadingsBatch,
            encode_publish,
        )

        slot = int((T0 + timedelta(minutes=30 * k)).timestamp())
        batch = ReadingsBatch(
            k,
            f"m{self.n}",
            (InstantSample(slot - 60, 420, 40, 20), InstantSample(slot, 380, 36, 20)),
            (FixedTimeValue(slot, 1000 + 17 * k + self.n % 5, 5 * k),),
            MeterScale(1, 0x01, 6),
        )
        packet = publish_packet(*encode_publish(batch, self.serial), packet_id=k)
        while k not in self.acked:
            await self.connected.wait()
            future = asyncio.get_running_loop().create_future()
            self.waiting[k] = future
            self.writer.write(packet)
            try:
                await asyncio.wait_for(future, 15)
            except TimeoutError:
                continue


# -- a worker process of gateways ----------------------------------------------------------


def _worker(base: str, gateways: list[tuple[int, bytes]], commands, reports, enrolled=None) -> None:
    """Runs its gateways; obeys the coordinator's commands ("enroll", "connect", ("round",
    k), "stop"); reports each phase's figures."""
    import httpx

    async def run() -> None:
        fleet = [
            LeanGateway(n, key, f"127.0.{2 + n // 20000}.{1 + n % 250}") for n, key in gateways
        ]
        if enrolled is not None:  # (the broker's nodes, clean sessions?): as enrollment tells
            nodes, clean = enrolled
            for gateway, (_, key) in zip(fleet, gateways, strict=True):
                gateway.credential = (*nodes[0], gateway.serial, _password(key))
                gateway.nodes, gateway.attempt, gateway.clean = list(nodes), gateway.n, clean
        limits = httpx.Limits(max_connections=ENROLL_CONCURRENCY)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
            keepers: list[asyncio.Task] = []
            while True:
                command = await asyncio.to_thread(commands.get)
                started = time.monotonic()
                if command == "enroll":
                    await _enroll_all(fleet, http)
                    reports.put(("enrolled", len(fleet), time.monotonic() - started))
                elif command == "connect":
                    keepers = [asyncio.create_task(g.keep_connected(http)) for g in fleet]
                    await _all_connected(fleet)
                    reports.put(("connected", len(fleet), time.monotonic() - started))
                elif command == "watch":  # until every gateway is connected again
                    await asyncio.sleep(1.0)  # the broker is going down now
                    await _all_connected(fleet)
                    enrollments = sum(g.enrollments for g in fleet)
                    reports.put(("reconnected", enrollments, time.monotonic() - started))
                elif isinstance(command, tuple) and command[0] == "round":
                    await asyncio.gather(*(g.publish_round(command[1]) for g in fleet))
                    reports.put(("round", len(fleet), time.monotonic() - started))
                elif command == "count":
                    acked = sum(len(g.acked) for g in fleet)
                    reports.put(("acked", acked, sum(g.enrollments for g in fleet)))
                elif command == "stop":
                    for task in keepers:
                        task.cancel()
                    return

    asyncio.run(run())


async def _enroll_all(fleet: list[LeanGateway], http) -> None:
    gate = asyncio.Semaphore(ENROLL_CONCURRENCY)

    async def one(gateway: LeanGateway) -> None:
        async with gate:
            await gateway.enroll(http)

    await asyncio.gather(*(one(g) for g in fleet))


async def _all_connected(fleet: list[LeanGateway]) -> None:
    while not all(g.connected.is_set() for g in fleet):
        await asyncio.sleep(0.1)


# -- the coordinator -----------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    from kenshin.ports import free_tcp_port

    return free_tcp_port()


class Server:
    """`kenshin server run` on PostgreSQL (jobs off) with its broker: a managed Mosquitto,
    or a 3-node RabbitMQ cluster that asks it who may connect (`--broker rabbitmq`)."""

    def __init__(
        self, url: str, workdir: Path, broker: str, env_extra: dict[str, str] | None = None
    ) -> None:
        self.http_port, self.mqtt_port = _free_port(), _free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.workdir, self.kind = workdir, broker
        self.cluster = None
        env = {
            **os.environ,
            "KENSHIN_DATABASE_URL": url,
            "KENSHIN_PORT": str(self.http_port),
            "KENSHIN_SECRET_KEY_FILE": str(workdir / "secret.key"),
            "KENSHIN_JOBS": "false",
            "KENSHIN_LOG_LEVEL": "warning",
            # the whole simulated fleet enrolls from one loopback address
            "KENSHIN_ENROLL_LIMIT_PER_CLIENT": "1000000/minute",
        }
        if broker == "rabbitmq":
            env.update(self._start_cluster())
        else:
            env.update({
                "KENSHIN_BROKER": "mosquitto",
                "KENSHIN_MQTT_PORT": str(self.mqtt_port),
                "KENSHIN_MOSQUITTO_DIR": str(workdir / "mosquitto"),
            })  # fmt: skip
        env.update(env_extra or {})
        self.log = (workdir / "server.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from kenshin.cli import main; main()", "server", "run"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def _start_cluster(self) -> dict[str, str]:
        from kenshin.server.broker.rabbitmq import node_config
        from kenshin.testing.clusters import RabbitCluster

        plugins = ("rabbitmq_mqtt", "rabbitmq_management", "rabbitmq_auth_backend_http",
                   "rabbitmq_auth_backend_cache")  # fmt: skip
        self.cluster = RabbitCluster(
            self.workdir / "rabbitmq", plugins=plugins, config_extra=node_config(self.base)
        )
        self.cluster.start()
        login = "kenshin-service:bench-secret"
        ports = self.cluster.mqtt_ports
        return {
            "KENSHIN_BROKER": f"mqtt://{login}@127.0.0.1:{ports[0]}",
            "KENSHIN_BROKER_AUTH": "http",
            "KENSHIN_BROKER_NODES": ",".join(f"127.0.0.1:{p}" for p in ports[1:]),
            "KENSHIN_BROKER_AMQP": ",".join(
                f"amqp://{login}@127.0.0.1:{p}/" for p in self.cluster.amqp_ports
            ),
            "KENSHIN_BROKER_MANAGEMENT": (
                f"http://{self.cluster.username}:{self.cluster.password}"
                f"@127.0.0.1:{self.cluster.management_ports[0]}"
            ),
        }

    def wait_ready(self, timeout_s: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the server is not ready: {(self.workdir / 'server.log').read_text()}")

    @property
    def broker_nodes(self) -> list[tuple[str, int]]:
        """Where gateways connect, as an enrollment answer names them."""
        if self.cluster is not None:
            return [("127.0.0.1", port) for port in self.cluster.mqtt_ports]
        return [("127.0.0.1", self.mqtt_port)]

    def broker_rss_mb(self) -> float:
        if self.cluster is not None:
            return self.cluster.rss_kib() / 1024
        return _rss_mb(int((self.workdir / "mosquitto" / "mosquitto.pid").read_text()))

    def fail_broker(self) -> str:
        """Mosquitto: restarted (SIGTERM; the server's supervisor starts it again). The
        cluster: one node killed (SIGKILL)."""
        if self.cluster is not None:
            self.cluster.kill_node(0)
            return "one node killed"
        os.kill(int((self.workdir / "mosquitto" / "mosquitto.pid").read_text()), signal.SIGTERM)
        return "restarted"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        if self.cluster is not None:
            self.cluster.stop()


def _collect(reports, count: int, kind: str) -> list[tuple]:
    got = [reports.get(timeout=1800) for _ in range(count)]
    assert all(r[0] == kind for r in got), got
    return got


def _say(text: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)


def run_fleet(
    broker: str,
    private: list,
    keys: list[bytes],
    rounds: int,
    enrolled: bool = False,
    after: int = 2,
) -> tuple[list, dict]:
    """One broker's run: the table's rows and the summary's figures. `enrolled`: the
    fleet enrolled before the run (credentials in the database), for a fleet larger than
    Mosquitto's plugin enrolls in the time of a bench (docs/scaling.md)."""
    count = len(private)
    url = _database(f"kenshin_bench_fleet_{os.getpid()}")
    _say(f"{broker}: a database of {count} claimed gateways" + (", enrolled" if enrolled else ""))
    raw = [k.private_bytes_raw() for k in private]
    _fleet(url, keys, [_password(key) for key in raw] if enrolled else None)
    workdir = Path(tempfile.mkdtemp(prefix="kenshin-fleet-"))
    server = Server(url, workdir, broker)
    rows: list[tuple[str, str]] = []
    try:
        server.wait_ready()
        cpu0 = _cpu_s(server.process.pid)
        context = multiprocessing.get_context("spawn")
        reports = context.Queue()
        numbered = list(enumerate(raw, 1))
        told = (server.broker_nodes, broker == "rabbitmq") if enrolled else None
        chunks = [numbered[i : i + PER_PROCESS] for i in range(0, len(numbered), PER_PROCESS)]
        queues = [context.Queue() for _ in chunks]
        workers = [
            context.Process(
                target=_worker, args=(server.base, chunk, q, reports, told), daemon=True
            )
            for chunk, q in zip(chunks, queues, strict=True)
        ]
        for worker in workers:
            worker.start()

        def phase(command, kind: str) -> list[tuple]:
            for q in queues:
                q.put(command)
            return _collect(reports, len(queues), kind)

        started = time.monotonic()
        if enrolled:
            rows.append(("enrolled in", "before the run"))
        else:
            phase("enroll", "enrolled")
            rows.append(("enrolled in", f"{time.monotonic() - started:.1f} s"))
            _say(f"{broker}: enrolled in {time.monotonic() - started:.1f} s")
        idle_rss = server.broker_rss_mb()
        started = time.monotonic()
        phase("connect", "connected")
        rows.append(("connected in", f"{time.monotonic() - started:.1f} s"))
        _say(f"{broker}: all {count} connected in {time.monotonic() - started:.1f} s")
        broker_rss, server_rss = server.broker_rss_mb(), _rss_mb(server.process.pid)
        per = count / 1000
        rows.append(("broker RSS, idle → all connected", f"{idle_rss:.0f} → {broker_rss:.0f} MB"))
        rows.append(("broker RSS per 1,000 connections", f"{(broker_rss - idle_rss) / per:.1f} MB"))
        rows.append(("server RSS per 1,000 gateways", f"{server_rss / per:.1f} MB"))
        k = 1
        for _ in range(rounds):
            begun = time.monotonic()
            phase(("round", k), "round")
            _say(f"{broker}: round {k} acknowledged in {time.monotonic() - begun:.1f} s")
            k += 1
            time.sleep(max(0.0, ROUND_S - (time.monotonic() - begun)))
        enrolled_before = sum(r[2] for r in phase("count", "acked"))
        what = server.fail_broker()
        _say(f"{broker}: broker {what}")
        failed = time.monotonic()
        for q in queues:
            q.put("watch")
        got = _collect(reports, len(queues), "reconnected")
        reconnected_s = time.monotonic() - failed
        _say(f"{broker}: all connected again in {reconnected_s:.1f} s")
        enrollments = sum(r[1] for r in got) - enrolled_before
        for _ in range(after):
            begun = time.monotonic()
            phase(("round", k), "round")
            _say(f"{broker}: round {k} acknowledged in {time.monotonic() - begun:.1f} s")
            k += 1
        acked = sum(r[1] for r in phase("count", "acked"))
        # The rounds come every ROUND_S, not every half hour: the ingest stores them
        # later than that (~150 batches/s here, each a recompute of its meter's slots).
        # Lost is what never comes: waited for as long as the count still moves.
        drain_from, drained_from = time.monotonic(), _stored(url)
        stored, moved_at = drained_from, time.monotonic()
        while stored < acked and time.monotonic() - moved_at < 60:
            time.sleep(1.0)
            if (now_stored := _stored(url)) > stored:
                stored, moved_at = now_stored, time.monotonic()
        drain_s = time.monotonic() - drain_from
        lost = acked - stored
        rows.append(("stored after the last round", f"{stored - drained_from} in {drain_s:.0f} s"))
        cpu = _cpu_s(server.process.pid) - cpu0
        rows += [
            ("the fault", what),
            ("all connected again after it in", f"{reconnected_s:.1f} s"),
            ("enrollments during the recovery", str(enrollments)),
            ("server CPU, whole run", f"{cpu:.1f} s"),
            ("readings published (30-minute values)", str(acked)),
            ("stored", str(stored)),
            ("lost", str(lost)),
        ]
        for q in queues:
            q.put("stop")
        for worker in workers:
            worker.join(30)
    finally:
        server.stop()
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    return rows, {"reconnected_s": reconnected_s, "enrollments": enrollments, "lost": lost}


TITLES = {"mosquitto": "Mosquitto (managed)", "rabbitmq": "RabbitMQ, 3 nodes"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds before the fault")
    parser.add_argument("--after", type=int, default=2, help="rounds after it")
    parser.add_argument("--broker", default="mosquitto", help="mosquitto, rabbitmq or both")
    parser.add_argument("--quick", action="store_true", help="100 gateways, one round")
    parser.add_argument(
        "--enrolled",
        action="store_true",
        help="the fleet enrolled before the run (its credentials seeded in the database): "
        "Mosquitto's plugin enrolls a large fleet in hours, not minutes",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.gateways, args.rounds = 100, 1
    brokers = ["mosquitto", "rabbitmq"] if args.broker == "both" else [args.broker]
    if any(b not in TITLES for b in brokers):
        parser.error(f"--broker: one of {', '.join(TITLES)} or both")
    # SIGTERM (kill, timeout) unwinds like Ctrl-C, through the `finally` that stops the
    # server and the RabbitMQ cluster: Erlang nodes outlive a killed parent, and three of
    # them left behind held 5 GB and two thirds of the CPU.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    if args.gateways > hard - 100:
        print(f"note: one Mosquitto holds at most ~{hard - 100} connections here "
              f"(open files, hard limit {hard})")  # fmt: skip

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = [Ed25519PrivateKey.generate() for _ in range(args.gateways)]
    keys = [k.public_key().public_bytes_raw() for k in private]
    print(f"fleet: {args.gateways} gateways on {', '.join(brokers)}", flush=True)
    results = {
        b: run_fleet(b, private, keys, args.rounds, args.enrolled, args.after) for b in brokers
    }
    names = [name for name, _ in next(iter(results.values()))[0]]
    width = max(map(len, names))
    print(f"\n| {'':<{width}} | " + " | ".join(TITLES[b] for b in brokers) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (len(TITLES[b]) + 2) for b in brokers) + "|")
    for i, name in enumerate(names):
        values = [results[b][0][i][1].ljust(len(TITLES[b])) for b in brokers]
        print(f"| {name:<{width}} | " + " | ".join(values) + " |")
    failed = False
    for broker in brokers:
        summary = results[broker][1]
        print(
            f"\nfleet ({broker}): gateways {args.gateways}, reconnected in "
            f"{summary['reconnected_s']:.1f} s, enrollments {summary['enrollments']}, "
            f"lost {summary['lost']}"
        )
        failed |= bool(summary["lost"] or summary["enrollments"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
