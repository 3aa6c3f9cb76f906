"""MQTT brokers for the fleet, on this machine: `.venv/bin/python bench/brokers.py`.

Mosquitto (one node, started here in a temp dir), a 3-node RabbitMQ 3.10 cluster (MQTT
plugin, ``mqtt.durable_queue_type = quorum``; ``rabbitmq-classic`` is the same with the
default classic queues) and a 3-node NATS 2.9 cluster (JetStream, MQTT listener), from
:mod:`kenshin.testing.clusters`. Per broker, one row:

* connections held: N lean MQTT 3.1.1 clients (bench/_mqtt.py's packets on asyncio
  streams, clean sessions, keepalive 600 s), spread round-robin over the nodes; with
  ``--sessions`` each is a gateway's session instead: ``clean_session=false`` and one QoS 1
  subscription (``k/<client id>/c``, its downlink), sent again after every reconnect;
* connect s: seconds until all N have their CONNACK (at most 200 CONNECTs in flight);
* RSS/1k: resident memory of the broker processes (sum over the nodes: ``beam.smp``,
  ``nats-server``, ``mosquitto``; VmRSS) per 1,000 held connections, over the idle
  broker's (also printed: idle RSS);
* QoS 1 msg/s: M messages from 10 publishers (all nodes, 20 in flight each) to one
  subscriber with ``clean_session=false`` at QoS 1 on node 1; from the first PUBLISH until
  the last message is delivered, with every PUBACK counted (``pubacks``) and deliveries
  counted distinct (``dup``: deliveries beyond that);
* kill: SIGKILL to node 2 (Mosquitto: its only node, restarted at once on the same port
  and data): how many held clients were disconnected, seconds from the kill until every
  held client is connected again (each reconnects to the next node of its list after a
  full-jitter wait of up to 1 s, doubling on failure), and how many of 100 QoS 1 messages
  survive that were published to an offline persistent subscriber (it subscribed through
  node 2, then disconnected; the messages went in through node 1; then node 2 was killed;
  the subscriber comes back through node 3 and has 20 s to receive them).

    --connections N (default 2000)  --messages M (default 10000)
    --brokers mosquitto,rabbitmq,nats (also: rabbitmq-classic)  --sessions  --json  --quick

This machine: 2 cores, every process at most 20,000 open files (the bench raises its soft
limit to the hard one; the held clients are one asyncio process, so N < ~19,500).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._mqtt import connect_packet, packet, publish_packet, read_packet, subscribe_packet
from kenshin.ports import free_tcp_port
from kenshin.testing.clusters import (
    NatsCluster,
    RabbitCluster,
    raise_open_files_limit,
    rss_kib,
)

HOST = "127.0.0.1"
PUBLISHERS = 10
WINDOW = 20
CONNECT_CONCURRENCY = 200
PERSISTENT = 100
PAYLOAD = bytes(200)  # about a ReadingsBatch


# -- brokers -------------------------------------------------------------------------------


class Mosquitto:
    """One Mosquitto 2.0 (anonymous, persistence in the temp dir), same methods as the
    clusters: ``mqtt_ports``, ``kill_node``, ``start_node``, ``rss_kib``."""

    kind = "mosquitto"

    def __init__(self, base_dir: Path) -> None:
        self.dir = base_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mqtt_ports = [free_tcp_port()]
        (self.dir / "mosquitto.conf").write_text(
            f"listener {self.mqtt_ports[0]} {HOST}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.dir}/\nautosave_interval 30\n"
            "max_queued_messages 1000000\nmax_inflight_messages 0\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        raise_open_files_limit()
        self.start_node(0)

    def start_node(self, _i: int) -> None:
        log = (self.dir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.dir / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((HOST, self.mqtt_ports[0]), 0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError((self.dir / "mosquitto.log").read_text()[-2000:])

    def kill_node(self, _i: int) -> None:
        self.process.kill()
        self.process.wait()

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid) if self.process else 0

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


def make_broker(name: str, base: Path):
    if name == "mosquitto":
        return Mosquitto(base / name)
    if name == "rabbitmq":
        return RabbitCluster(base / name, config_extra="mqtt.durable_queue_type = quorum")
    if name == "rabbitmq-classic":
        return RabbitCluster(base / name)
    if name == "nats":
        return NatsCluster(base / name)
    raise SystemExit(f"unknown broker {name!r}")


def credentials(broker) -> tuple[str, str]:
    if isinstance(broker, RabbitCluster):
        return broker.username, broker.password
    return "bench", "bench"  # anonymous brokers ignore them


# -- a lean MQTT client ----------------------------------------------------------------------


class Refused(ConnectionError):
    pass


async def mqtt_connect(
    port: int, client_id: str, auth: tuple[str, str], *, clean: bool = True, timeout_s=30
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout_s)
    try:
        writer.write(connect_packet(client_id, *auth, clean=clean, keepalive=600))
        first, body = await asyncio.wait_for(read_packet(reader), timeout_s)
        if first >> 4 != 2 or body[1] != 0:
            raise Refused(f"{client_id}: CONNACK {body.hex()}")
    except BaseException:
        writer.close()
        raise
    return reader, writer


def puback(packet_id: bytes) -> bytes:
    return b"\x40\x02" + packet_id


def publish_id(first: int, body: bytes) -> tuple[bytes, bytes]:
    """(packet id, payload) of a QoS 1 PUBLISH."""
    (topic_length,) = struct.unpack("!H", body[:2])
    if (first >> 1) & 3:
        return body[2 + topic_length : 4 + topic_length], body[4 + topic_length :]
    return b"", body[2 + topic_length :]


async def subscribe(reader, writer, topic: str) -> None:
    writer.write(subscribe_packet(1, [topic]))
    while True:
        first, body = await asyncio.wait_for(read_packet(reader), 30)
        if first >> 4 == 9:
            if body[2] == 0x80:
                raise Refused(f"SUBACK refused {topic}")
            return


def disconnect(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.write(packet(0xE0, b""))
        writer.close()


# -- held connections --------------------------------------------------------------------


class Held:
    """One lean client that stays connected and reconnects over the node list."""

    def __init__(self, n: int, ports: list[int], auth, sessions: bool = False) -> None:
        self.n, self.ports, self.auth, self.sessions = n, ports, auth, sessions
        self.home = n % len(ports)
        self.connected = asyncio.Event()
        self.connected_at = 0.0
        self.port = 0
        self.disconnects = 0
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, gate: asyncio.Semaphore) -> None:
        attempt, backoff = 0, 1.0
        while True:
            port = self.ports[(self.home + attempt) % len(self.ports)]
            try:
                async with gate:
                    client_id = f"hold-{self.n:06d}"
                    reader, writer = await mqtt_connect(
                        port, client_id, self.auth, clean=not self.sessions
                    )
                    if self.sessions:  # a gateway's downlink: a QoS 1 subscription
                        await subscribe(reader, writer, f"k/{client_id}/c")
            except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
                attempt += 1
                await asyncio.sleep(random.uniform(0, backoff))
                backoff = min(backoff * 2, 8.0)
                continue
            backoff = 1.0
            self.port = port
            self.writer = writer
            self.connected_at = time.monotonic()
            self.connected.set()
            with contextlib.suppress(OSError, ConnectionError):
                while await reader.read(4096):
                    pass
            writer.close()
            self.writer = None
            self.connected.clear()
            self.disconnects += 1
            attempt += 1  # the next node of the list first
            await asyncio.sleep(random.uniform(0, 1.0))


async def all_connected(held: list[Held], timeout_s: float) -> float:
    started = time.monotonic()
    while not all(h.connected.is_set() for h in held):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(
                f"{sum(h.connected.is_set() for h in held)}/{len(held)} connected "
                f"after {timeout_s:.0f} s"
            )
        await asyncio.sleep(0.05)
    return time.monotonic()


# -- throughput --------------------------------------------------------------------------


async def throughput(ports: list[int], auth, messages: int, tag: str) -> dict:
    reader, writer = await mqtt_connect(ports[0], f"sub-{tag}", auth, clean=False)
    await subscribe(reader, writer, f"bench/{tag}/+")
    seen: set[bytes] = set()
    deliveries = 0
    done = asyncio.Event()

    async def consume() -> None:
        nonlocal deliveries
        while True:
            first, body = await read_packet(reader)
            if first >> 4 == 3:
                packet_id, payload = publish_id(first, body)
                if packet_id:
                    writer.write(puback(packet_id))
                deliveries += 1
                seen.add(payload[:12])
                if len(seen) >= messages:
                    done.set()

    consumer = asyncio.create_task(consume())
    pubacks = 0
    per = [messages // PUBLISHERS + (p < messages % PUBLISHERS) for p in range(PUBLISHERS)]

    async def publish(p: int) -> None:
        nonlocal pubacks
        r, w = await mqtt_connect(ports[p % len(ports)], f"pub-{tag}-{p}", auth)
        sent = 0
        while sent < per[p]:
            window = min(WINDOW, per[p] - sent)
            for k in range(window):
                mark = f"{p:04d}{sent + k:08d}".encode()
                w.write(publish_packet(f"bench/{tag}/{p}", mark + PAYLOAD, k + 1))
            got = 0
            while got < window:
                first, _body = await asyncio.wait_for(read_packet(r), 60)
                if first >> 4 == 4:
                    got += 1
            pubacks += window
            sent += window
        disconnect(w)

    started = time.monotonic()
    await asyncio.gather(*(publish(p) for p in range(PUBLISHERS)))
    published = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 120)
    delivered = time.monotonic()
    consumer.cancel()
    disconnect(writer)
    # the persistent session is no longer needed
    with contextlib.suppress(Exception):
        _r, w = await mqtt_connect(ports[0], f"sub-{tag}", auth, clean=True)
        disconnect(w)
    return {
        "pubacks": pubacks,
        "delivered": len(seen),
        "duplicates": deliveries - len(seen),
        "publish_s": published - started,
        "deliver_s": delivered - started,
    }


# -- the run of one broker -----------------------------------------------------------------


@dataclass
class Row:
    broker: str
    nodes: int
    start_s: float
    connections: int
    connect_s: float
    idle_rss_mb: float
    rss_per_1k_mb: float
    msgs_per_s: float
    pubacks: int
    delivered: int
    duplicates: int
    disconnected: int
    reconnect_s: float
    queued_survived: int
    queued: int
    note: str = ""


async def run_broker(name: str, broker, n: int, messages: int, log, sessions: bool) -> Row:
    ports = broker.mqtt_ports
    nodes = len(ports)
    auth = credentials(broker)
    await asyncio.sleep(1.0)
    idle = broker.rss_kib()

    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    held = [Held(i, ports, auth, sessions) for i in range(n)]
    started = time.monotonic()
    tasks = [asyncio.create_task(h.run(gate)) for h in held]
    connect_s = await all_connected(held, 600) - started
    log(f"{name}: {n} connected in {connect_s:.1f} s")
    await asyncio.sleep(2.0)
    loaded = broker.rss_kib()

    rate = await throughput(ports, auth, messages, "t")
    msgs_per_s = rate["delivered"] / rate["deliver_s"]
    log(f"{name}: QoS 1 {msgs_per_s:.0f} msg/s {rate}")

    # a persistent subscriber through the node to be killed; offline; messages queued for it
    victim = 1 if nodes > 1 else 0
    back = 2 % nodes
    reader, writer = await mqtt_connect(ports[victim], "persist", auth, clean=False)
    await subscribe(reader, writer, "bench/persist")
    disconnect(writer)
    await asyncio.sleep(0.5)
    r, w = await mqtt_connect(ports[0], "persist-pub", auth)
    for k in range(PERSISTENT):
        w.write(publish_packet("bench/persist", f"{k:06d}".encode(), k + 1))
    got = 0
    while got < PERSISTENT:
        first, _body = await asyncio.wait_for(read_packet(r), 60)
        got += first >> 4 == 4
    disconnect(w)
    await asyncio.sleep(0.5)

    per_node = [sum(h.port == port for h in held) for port in ports]
    log(f"{name}: held clients per node before the kill: {per_node}")
    before = {h.n: h.disconnects for h in held}
    killed = time.monotonic()
    await asyncio.to_thread(broker.kill_node, victim)
    note = ""
    if isinstance(broker, Mosquitto):
        await asyncio.to_thread(broker.start_node, 0)
        note = "the only node: killed and restarted at once"
    await asyncio.sleep(1.5)  # every client of the node has seen its EOF by now
    try:
        await all_connected(held, 300)
        lost = [h for h in held if h.disconnects > before[h.n]]
        reconnect_s = max((h.connected_at - killed for h in lost), default=0.0)
    except TimeoutError as error:
        reconnect_s = float("nan")
        note = f"{note}; {error}".strip("; ")
    disconnected = sum(h.disconnects > before[h.n] for h in held)
    log(f"{name}: {disconnected} disconnected, all back in {reconnect_s:.1f} s")

    survived: set[bytes] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(survived) < PERSISTENT:
        try:
            reader, writer = await mqtt_connect(ports[back], "persist", auth, clean=False)
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            await asyncio.sleep(1)
            continue
        try:
            while len(survived) < PERSISTENT:
                left = deadline - time.monotonic()
                first, body = await asyncio.wait_for(read_packet(reader), max(0.1, left))
                if first >> 4 == 3:
                    packet_id, payload = publish_id(first, body)
                    writer.write(puback(packet_id))
                    survived.add(payload)
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            pass
        disconnect(writer)
    log(f"{name}: {len(survived)}/{PERSISTENT} queued messages survived")

    for task in tasks:
        task.cancel()
    for h in held:
        if h.writer is not None:
            h.writer.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Row(
        broker=name,
        nodes=nodes,
        start_s=0.0,
        connections=n,
        connect_s=round(connect_s, 1),
        idle_rss_mb=round(idle / 1024, 1),
        rss_per_1k_mb=round((loaded - idle) / 1024 / (n / 1000), 1),
        msgs_per_s=round(msgs_per_s),
        pubacks=rate["pubacks"],
        delivered=rate["delivered"],
        duplicates=rate["duplicates"],
        disconnected=disconnected,
        reconnect_s=round(reconnect_s, 1),
        queued_survived=len(survived),
        queued=PERSISTENT,
        note=note,
    )


COLUMNS = [
    ("broker", "broker", "{}"),
    ("nodes", "nodes", "{}"),
    ("start s", "start_s", "{:.1f}"),
    ("held", "connections", "{:,}"),
    ("connect s", "connect_s", "{:.1f}"),
    ("idle RSS MB", "idle_rss_mb", "{:.0f}"),
    ("RSS MB/1k conn", "rss_per_1k_mb", "{:.1f}"),
    ("QoS 1 msg/s", "msgs_per_s", "{:,}"),
    ("PUBACKs", "pubacks", "{:,}"),
    ("delivered", "delivered", "{:,}"),
    ("dup", "duplicates", "{}"),
    ("kill: disconnected", "disconnected", "{:,}"),
    ("kill: all back s", "reconnect_s", "{:.1f}"),
    ("kill: queued survived", "queued_survived", "{}"),
]


def table(rows: list[Row]) -> str:
    cells = [[title for title, _k, _f in COLUMNS]]
    for row in rows:
        values = asdict(row)
        line = [fmt.format(values[key]) for _t, key, fmt in COLUMNS]
        line[-1] = f"{row.queued_survived}/{row.queued}"
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    out = []
    for k, line in enumerate(cells):
        out.append("| " + " | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if k == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"{row.broker}: {row.note}" for row in rows if row.note]
    return "\n".join(out + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--brokers", default="mosquitto,rabbitmq,nats")
    parser.add_argument("--json", action="store_true", help="one JSON object per broker")
    parser.add_argument(
        "--sessions",
        action="store_true",
        help="held clients as gateways: clean_session=false, one QoS 1 subscription each",
    )
    parser.add_argument("--quick", action="store_true", help="200 connections, 2000 messages")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.messages = 200, 2000
    hard = raise_open_files_limit()
    if args.connections > hard - 500:
        raise SystemExit(f"at most {hard - 500} connections here (open files, {hard})")

    def log(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    rows = []
    base = tempfile.mkdtemp(prefix="kenshin-brokers-")
    try:
        for name in args.brokers.split(","):
            broker = make_broker(name.strip(), Path(base))
            started = time.monotonic()
            broker.start()
            try:
                start_s = time.monotonic() - started
                log(f"{name}: started in {start_s:.1f} s")
                row = asyncio.run(
                    run_broker(name, broker, args.connections, args.messages, log, args.sessions)
                )
                if args.sessions:
                    row.broker += " +sessions"
                row.start_s = round(start_s, 1)
                rows.append(row)
            finally:
                broker.stop()
        if args.json:
            for row in rows:
                print(json.dumps(asdict(row)), flush=True)
        else:
            print(table(rows), flush=True)
    finally:  # thousands of Raft directories with --sessions: seconds to a minute
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
