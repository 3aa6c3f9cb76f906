"""Bytes a gateway costs on a cellular plan: `.venv/bin/python bench/uplink_bytes.py`.

One real gateway agent, at the default policy the server hands it (instant power every
60 s and the currents every 5 minutes, the 30-minute energy, a batch after each half hour,
a Status on a change or once a day), reads a simulated meter and sends to the real server
and its embedded broker, through a TLS front door as in production (HTTPS enrollment, MQTT
over TLS), all on loopback. Beside it, in the same run, through the same front door and
broker, a naive publisher sends the same readings as one JSON document each (QoS 1,
keep-alive 60 s, aiomqtt/paho: what a first design would do).

Bytes are counted at the IP level, both directions: IPv4 and TCP headers, TCP's own
packets (handshakes, ACKs, FINs), TLS records and handshakes. Preferred method: a packet
capture on `lo` (an AF_PACKET socket in this process; needs root or CAP_NET_RAW), filtered
to the front door's and the HTTPS port. Without it (or with --relay): a counting TCP relay
in front of both, with modelled headers and ACKs (stated in the output).

The agent runs on a simulated clock (24 simulated hours at 1,200x: about 75 s); the month
(30 days) is extrapolated from the bytes per simulated hour, plus what the run cannot show
at that speed (stated in the output): heartbeats and keep-alive pings run on real time.

    --quick    a tiny run (1 simulated hour, a few seconds): the smoke test's
    --no-tls   plain MQTT and HTTP (what TLS costs, by difference)
    --relay    the relay method even where a capture is possible
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiomqtt

from bench._platform import (
    ETHERNET_MSS,
    SLOT_S,
    BrokerFront,
    MqttPacket,
    PhasedClock,
    Platform,
    TlsFiles,
    make_tls_files,
    quiet_logging,
    scratch_dir,
    slot_of,
)
from bench.wire_size import DAY, House, naive_json_readings, print_table
from kenshin.cli.ports import free_udp_port
from kenshin.gateway.agent import STATUS_MAX_S, AgentOptions, GatewayAgent
from kenshin.gateway.enroll import Enrollment, enroll_once
from kenshin.gateway.poller import PollPolicy
from kenshin.server.devices.config import DEFAULTS
from kenshin.sim.clock import JST
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig
from kenshin.wire import FixedTimeValue, ReadingsBatch

GATEWAY_ID = "b827eb4f21c9"  # 12 characters, as a MAC-derived serial would be
NAIVE_ID = "b827eb4f21ca"
METER_HOST = "127.0.1.1"
MONTH_S = 30 * 86_400
MONTH_H = MONTH_S / 3600
GOAL_BYTES = 500_000  # a month, both directions
GOAL_RATIO = 1 / 20
FIRST_SLOT = datetime(2026, 7, 1, 0, 0, tzinfo=JST)  # the simulated day starts at midnight
TLS13_RECORD = 22  # 5 header + 1 content type + 16 AEAD tag; TLS 1.2 AES-GCM: 29

PUBLISH, PUBACK = 3, 4


@dataclass(frozen=True)
class RunPlan:
    hours: float  # the gateway's measured stretch, simulated
    speed: float
    naive_hours: float
    naive_speed: float  # slower: 60 s between readings must stay longer than a delayed ACK


FULL = RunPlan(hours=24, speed=1200, naive_hours=2, naive_speed=240)
QUICK = RunPlan(hours=1, speed=1800, naive_hours=0.5, naive_speed=600)


# -- counting bytes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One IP packet (or a modelled one) of a TCP connection to one of our server ports."""

    t: float  # time.monotonic()
    client_port: int
    server_port: int
    up: bool  # gateway → cloud
    ip_bytes: int  # as billed: IPv4 + TCP headers + payload
    payload: int


class LoopbackCapture:
    """Every IPv4/TCP packet on `lo` to or from `server_ports`, from an AF_PACKET socket.

    Each packet appears twice on loopback (leaving and arriving); only the outgoing copy is
    kept. Loopback hands TCP's large (GSO) packets over whole: one larger than the MSS is
    counted as the MSS-sized segments a real link would carry, each with its own headers."""

    ETH_P_ALL, PACKET_OUTGOING, SOL_PACKET, PACKET_STATISTICS = 0x0003, 4, 263, 6

    def __init__(self, server_ports: set[int], mss: int):
        self.server_ports, self.mss = server_ports, mss
        self.segments: list[Segment] = []
        self.resegmented = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why a capture cannot run here, or None."""
        if not hasattr(socket, "AF_PACKET"):
            return "no AF_PACKET sockets on this system"
        try:
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(cls.ETH_P_ALL)).close()
        except PermissionError:
            return "a packet capture needs root or CAP_NET_RAW"
        except OSError as err:
            return f"no packet capture: {err}"
        return None

    def start(self) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(self.ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind(("lo", 0))
        sock.settimeout(0.05)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            raw = self._sock.getsockopt(self.SOL_PACKET, self.PACKET_STATISTICS, 8)
            self.dropped += struct.unpack("II", raw)[1]
            self._sock.close()

    def _run(self) -> None:
        assert self._sock is not None
        frame = bytearray(160)  # headers are all we need
        while not self._stop.is_set():
            try:
                _, address = self._sock.recvfrom_into(frame, len(frame))
            except TimeoutError:
                continue
            if address[2] != self.PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                continue
            t = time.monotonic()
            ihl = (frame[14] & 0x0F) * 4
            if frame[23] != 6:  # not TCP
                continue
            (total,) = struct.unpack_from("!H", frame, 16)
            tcp = 14 + ihl
            sport, dport = struct.unpack_from("!HH", frame, tcp)
            if dport in self.server_ports:
                up, client, server = True, sport, dport
            elif sport in self.server_ports:
                up, client, server = False, dport, sport
            else:
                continue
            header = ihl + (frame[tcp + 12] >> 4) * 4
            payload = total - header
            per_segment = self.mss - (header - ihl - 20)  # TCP options come out of the MSS
            count = max(1, -(-payload // per_segment))
            if count > 1:
                self.resegmented += 1
            self.segments.append(Segment(t, client, server, up, payload + count * header, payload))


class TapRelay:
    """The fallback: a TCP relay on 127.0.0.1 in front of `target`, counting what passes.
    Each read is taken as one segment; each segment costs 40 bytes of IPv4+TCP header and
    one 40-byte ACK back (delayed ACKs modelled as one a received segment); a connection
    costs SYN, SYN-ACK, ACK and a FIN and its ACK each way."""

    HEADER = 40

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = 0
        self.segments: list[Segment] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _model(self, key: int, up: bool, payload: int = 0) -> None:
        t, h = time.monotonic(), self.HEADER
        self.segments.append(Segment(t, key, self.port, up, h + payload, payload))
        if payload:  # its ACK
            self.segments.append(Segment(t, key, self.port, not up, h, 0))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        key = up_writer.get_extra_info("sockname")[1]  # the client port the next hop sees
        for up in (True, False, True):  # SYN, SYN-ACK, ACK
            self._model(key, up)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    self._model(key, up, len(data))
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        for up in (True, False, False, True):  # FIN, ACK, FIN, ACK
            self._model(key, up)


def sums(segments: Iterable[Segment]) -> tuple[int, int]:
    up = down = 0
    for s in segments:
        if s.up:
            up += s.ip_bytes
        else:
            down += s.ip_bytes
    return up, down


def between(segments: Iterable[Segment], lo: float, hi: float) -> list[Segment]:
    return [s for s in segments if lo <= s.t < hi]


# -- the naive publisher -----------------------------------------------------------------------


@dataclass
class NaiveRun:
    hours: float
    speed: float
    start: float = 0.0  # monotonic: connected and settled; the measured stretch begins
    end: float = 0.0  # the last PUBACK and its ACK are done
    messages: int = 0


def naive_documents(start: datetime, hours: float) -> list[tuple[datetime, bytes]]:
    """(when sent, JSON) for every reading in [start, start + hours), the readings the
    gateway takes: a document a minute (power, and the currents as often as the poller reads
    them; sent when the read ended) and one a half hour for the 30-minute value, 20 s after
    the boundary, as the poller reads it."""
    house, rng = House(), random.Random("naive")
    begin, end = int(start.timestamp()), int(start.timestamp() + hours * 3600)
    currents_every_s = int(PollPolicy().currents_every_s)
    out = []
    for tick in range(begin, end, 60):
        at = tick + int(rng.uniform(0.2, 2.6))
        sample = house.sample(at, (tick - begin) % currents_every_s == 0)
        batch = ReadingsBatch(0, "0", (sample,), (), None)
        out.append((datetime.fromtimestamp(at, JST), naive_json_readings(batch)[0]))
    for boundary in range(begin, end, SLOT_S):
        fixed: FixedTimeValue = house.fixed(boundary - SLOT_S)
        batch = ReadingsBatch(0, "0", (), (fixed,), house.scale)
        out.append((datetime.fromtimestamp(boundary + 20, JST), naive_json_readings(batch)[0]))
    return sorted(out, key=lambda item: item[0])


async def naive_publisher(
    access: Enrollment, port: int, tls: TlsFiles | None, run: NaiveRun
) -> NaiveRun:
    start = DAY + timedelta(hours=12)  # bench/wire_size.py's house, from noon
    documents = naive_documents(start, run.hours)
    clock = PhasedClock(start - timedelta(seconds=1.0 * run.speed), run.speed)  # 1 s to connect
    topic = f"k/{NAIVE_ID}/d"
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=access.mqtt.username,
        password=access.mqtt.password,
        identifier=NAIVE_ID,
        keepalive=60,
        tls_params=aiomqtt.TLSParameters(ca_certs=str(tls.ca)) if tls else None,
    ) as client:
        run.start = clock.real_at(start)
        for when, document in documents:
            await clock.sleep_until(when)
            await client.publish(topic, document, qos=1)  # returns after the PUBACK
            run.messages += 1
        run.end = max(clock.real_at(start + timedelta(hours=run.hours)), time.monotonic() + 0.3)
        await asyncio.sleep(max(0.0, run.end - time.monotonic()))
    return run


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Measured:
    method: str
    tls: bool
    plan: RunPlan
    chain_bytes: int = 0  # the certificates a TLS server sends (DER)
    tls_version: str | None = None
    # the gateway
    enrollment: list[Segment] = field(default_factory=list)
    enrollment_connections: int = 0
    setup: list[Segment] = field(default_factory=list)
    first_batch: list[Segment] = field(default_factory=list)
    steady: list[Segment] = field(default_factory=list)
    teardown: list[Segment] = field(default_factory=list)
    packets: list[MqttPacket] = field(default_factory=list)  # the gateway's MQTT, in the window
    status_publish: int = 0  # bytes of the Status PUBLISH the agent sent at start
    keepalive_s: int = 0
    instant_reads: int = 0
    strays: int = 0
    setup_overlap: bool = False
    speed_real_s: float = 0.0
    # the naive publisher
    naive: NaiveRun | None = None
    naive_setup: list[Segment] = field(default_factory=list)
    naive_steady: list[Segment] = field(default_factory=list)
    naive_teardown: list[Segment] = field(default_factory=list)
    naive_packets: list[MqttPacket] = field(default_factory=list)
    naive_keepalive_s: int = 0
    notes: list[str] = field(default_factory=list)


async def _until(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(0.01)
    return value


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def measure(plan: RunPlan, *, tls_on: bool, force_relay: bool) -> Measured:
    workdir = scratch_dir("kenshin-uplink-")
    try:
        return await _measure(workdir, plan, tls_on=tls_on, force_relay=force_relay)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _measure(workdir: Path, plan: RunPlan, *, tls_on: bool, force_relay: bool) -> Measured:
    tls = make_tls_files(workdir) if tls_on else None
    if tls is not None:  # the agent trusts our root as it would a public CA's
        os.environ["SSL_CERT_FILE"] = str(tls.ca)
    why_not = LoopbackCapture.unavailable()
    method = "relay" if force_relay or why_not else "capture"
    out = Measured(method, tls is not None, plan)
    out.chain_bytes = tls.chain_der_bytes if tls else 0
    if why_not and not force_relay:
        out.notes.append(f"no packet capture ({why_not}): counted by a relay instead")

    async with Platform(workdir, tls=tls, mss=ETHERNET_MSS) as platform:
        front = BrokerFront((platform.broker.host, platform.broker.port), tls=tls, mss=ETHERNET_MSS)
        await front.start()
        capture: LoopbackCapture | None = None
        taps: list[TapRelay] = []
        if method == "capture":
            capture = LoopbackCapture({front.port, platform.http_port}, ETHERNET_MSS)
            capture.start()
            mqtt_port, http_port = front.port, platform.http_port
        else:
            taps = [
                TapRelay(("127.0.0.1", front.port)),
                TapRelay(("127.0.0.1", platform.http_port)),
            ]
            for tap in taps:
                await tap.start()
            mqtt_port, http_port = taps[0].port, taps[1].port
        scheme = "https" if tls else "http"
        platform.advertise("127.0.0.1", mqtt_port, tls=tls is not None)

        meter_port = free_udp_port(METER_HOST)
        identity = await platform.add_gateway(
            GATEWAY_ID, (METER_HOST, meter_port), server_url=f"{scheme}://127.0.0.1:{http_port}"
        )
        naive_access = await enroll_once(await platform.add_gateway(NAIVE_ID))
        assert isinstance(naive_access, Enrollment)

        # Start 27 simulated minutes before a half hour: time to enroll and connect, so the
        # first batch comes after the start-up traffic, not in the middle of it.
        lead = timedelta(minutes=27)
        clock = PhasedClock(FIRST_SLOT - lead, plan.speed)
        fleet = SimFleet(
            1, clock, port=meter_port, config=MeterConfig(seed=3, pv=True), multicast=False
        )
        await fleet.start(announce=False)
        started = time.monotonic()
        agent = GatewayAgent(identity, AgentOptions(queue_path=workdir / "queue.db"), clock=clock)
        running = asyncio.create_task(agent.run_forever())
        naive_run = NaiveRun(plan.naive_hours, plan.naive_speed)
        naive = asyncio.create_task(naive_publisher(naive_access, mqtt_port, tls, naive_run))
        try:

            def first_batch() -> MqttPacket | None:
                return next(
                    (p for p in front.packets(GATEWAY_ID) if p.up and p.topic and is_batch(p)),
                    None,
                )

            first = await _until(first_batch, 60 + 2 * SLOT_S / plan.speed, "the first batch")
            assert isinstance(first, MqttPacket)
            b1 = slot_of(clock.at(first.t))
            window = (b1 + timedelta(minutes=15), b1 + timedelta(minutes=15, hours=plan.hours))
            w0, w1 = clock.real_at(window[0]), clock.real_at(window[1])
            await _sleep_until(w0)
            reads0 = agent.meter.poller.stats.instant_reads if agent.meter else 0
            await _sleep_until(w1)
            reads1 = agent.meter.poller.stats.instant_reads if agent.meter else 0
            out.speed_real_s = w1 - w0
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            agent.queue.close()
        out.naive = await naive
        await asyncio.sleep(0.5)  # the last FINs and ACKs
        fleet.close()
        if capture is not None:
            capture.stop()
            segments = capture.segments
            if capture.resegmented:
                out.notes.append(
                    f"{capture.resegmented} packets over the MSS counted as "
                    f"{ETHERNET_MSS}-byte segments"
                )
            if capture.dropped:
                out.notes.append(f"the capture dropped {capture.dropped} packets (any port)")
        else:
            segments = [s for tap in taps for s in tap.segments]
            for tap in taps:
                await tap.close()
        await front.close()

    # The gateway: enrollment (HTTPS connections it opened), then its MQTT connection(s).
    first_seen: dict[int, float] = {}
    for s in segments:
        if s.server_port == http_port:
            first_seen.setdefault(s.client_port, s.t)
    enroll_ports = {port for port, t in first_seen.items() if t >= started}
    out.enrollment = [
        s for s in segments if s.server_port == http_port and s.client_port in enroll_ports
    ]
    out.enrollment_connections = len(enroll_ports)
    ports = {c.client_port for c in front.of(GATEWAY_ID)}
    mine = [s for s in segments if s.server_port == mqtt_port and s.client_port in ports]
    t_b1 = clock.real_at(b1)
    out.setup = [s for s in mine if s.t < t_b1]
    out.first_batch = between(mine, t_b1, w0)
    out.steady = between(mine, w0, w1)
    out.teardown = [s for s in mine if s.t >= w1]
    packets = front.packets(GATEWAY_ID)
    out.packets = [p for p in packets if w0 <= p.t < w1]
    out.steady, out.packets, out.strays = drop_strays(out.steady, out.packets, tls is not None)
    status = [p for p in packets if p.up and p.kind == PUBLISH and (p.topic or "").endswith("/s")]
    if status:
        out.status_publish = status[0].size
        acked = [
            p
            for p in packets
            if not p.up
            and p.kind == PUBACK
            and p.packet_id == status[0].packet_id
            and p.t >= status[0].t
        ]
        done = acked[0].t if acked else status[0].t
        out.setup_overlap = done + 0.2 > clock.real_at(b1 + timedelta(seconds=20))
    out.keepalive_s = max((c.keepalive_s or 0) for c in front.of(GATEWAY_ID))
    out.tls_version = front.of(GATEWAY_ID)[0].tls_version
    out.instant_reads = reads1 - reads0

    # The naive publisher: connect, its stretch of readings, disconnect.
    run = out.naive
    ports = {c.client_port for c in front.of(NAIVE_ID)}
    theirs = [s for s in segments if s.server_port == mqtt_port and s.client_port in ports]
    out.naive_setup = [s for s in theirs if s.t < run.start]
    out.naive_steady = between(theirs, run.start, run.end)
    out.naive_teardown = [s for s in theirs if s.t >= run.end]
    out.naive_packets = [p for p in front.packets(NAIVE_ID) if run.start <= p.t < run.end]
    out.naive_keepalive_s = max((c.keepalive_s or 0) for c in front.of(NAIVE_ID))
    return out


def is_batch(p: MqttPacket) -> bool:
    return p.up and p.kind == PUBLISH and (p.topic or "").endswith("/d")


def drop_strays(
    steady: list[Segment], packets: list[MqttPacket], tls: bool
) -> tuple[list[Segment], list[MqttPacket], int]:
    """Leave out the batches only the simulation's speed makes. The agent's flush takes the
    queue again after each PUBACK; at 1,200x an instant sample (one a simulated minute)
    often lands during the few milliseconds of a publish and leaves at once as a batch of
    its own. At real speed the next sample is 40 s away. Such a batch's PUBLISH segment and
    its PUBACK segment go, and its pure ACK where the regular batch's PUBACK had one of its
    own already (the sample itself would add a few bytes to the next regular batch)."""
    record = TLS13_RECORD if tls else 0
    strays: list[tuple[MqttPacket, float]] = []  # and when its regular batch went
    last = -1e9
    for p in packets:
        if is_batch(p):
            if p.t - last < 0.25:
                strays.append((p, last))
            else:
                last = p.t
    drop: set[int] = set()
    for p, regular in strays:
        publish = next(
            (
                i
                for i, s in enumerate(steady)
                if i not in drop and s.up and s.payload == p.size + record and abs(s.t - p.t) < 0.05
            ),
            None,
        )
        if publish is None:
            continue
        drop.add(publish)
        puback = next(
            (
                i
                for i, s in enumerate(steady)
                if i > publish and not s.up and s.payload == 4 + record and s.t - p.t < 0.05
            ),
            None,
        )
        if puback is not None:
            drop.add(puback)
        # When the regular PUBACK was acknowledged before the stray went, the stray's
        # PUBACK has a pure ACK of its own: that goes too.
        acks = [
            i
            for i, s in enumerate(steady)
            if i not in drop and s.up and not s.payload and regular - 0.01 <= s.t < p.t + 0.3
        ]
        if len(acks) >= 2:
            drop.add(acks[-1])
    gone = {id(p) for p, _ in strays}
    ids = {p.packet_id for p, _ in strays}
    kept = [
        p
        for p in packets
        if id(p) not in gone and not (not p.up and p.kind == PUBACK and p.packet_id in ids)
    ]
    return [s for i, s in enumerate(steady) if i not in drop], kept, len(strays)


# -- the month ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    what: str
    each_up: float | None
    each_down: float | None
    per_month: float
    up: float
    down: float


def gateway_month(m: Measured) -> tuple[list[Line], list[str]]:
    hours = m.plan.hours
    steady_up, steady_down = sums(m.steady)
    batches = [p for p in m.packets if is_batch(p)]
    n = max(1, len(batches))
    batch_up, batch_down = steady_up / n, steady_down / n
    batch_publish = statistics.fmean(p.size for p in batches) if batches else 0.0
    per_month_batches = MONTH_H / hours * len(batches)
    heartbeat_s = float(DEFAULTS["heartbeat_s"])
    # The agent sends a Status when something in it changes, else every STATUS_MAX_S; a
    # steady gateway (the default policy's case) sends one each STATUS_MAX_S.
    heartbeats = MONTH_S / STATUS_MAX_S
    # A heartbeat is a QoS 1 exchange like a batch's, with the Status PUBLISH instead.
    hb_up = batch_up - batch_publish + m.status_publish
    # Any packet sent resets the keep-alive timer: the longest silence is the shorter of the
    # batch and heartbeat intervals.
    silence = min(SLOT_S, heartbeat_s)
    pings = 0.0 if silence < m.keepalive_s else MONTH_S / silence * (silence // m.keepalive_s)
    ping_up, ping_down = batch_up - batch_publish + 2, batch_down - 4 + 2
    setup_up, setup_down = sums(m.setup + m.teardown)
    enroll_up, enroll_down = sums(m.enrollment)
    lines = [
        Line(
            "readings batches (PUBLISH QoS 1, PUBACK)",
            batch_up,
            batch_down,
            per_month_batches,
            steady_up * MONTH_H / hours,
            steady_down * MONTH_H / hours,
        ),
        Line(
            "heartbeats (Status, QoS 1)",
            hb_up,
            batch_down,
            heartbeats,
            hb_up * heartbeats,
            batch_down * heartbeats,
        ),
        Line(
            f"keep-alive PINGREQ/PINGRESP ({m.keepalive_s} s)",
            ping_up,
            ping_down,
            pings,
            ping_up * pings,
            ping_down * pings,
        ),
        Line(
            "MQTT session: TLS, CONNECT, SUBSCRIBE, settings, status, close"
            if m.tls
            else "MQTT session: CONNECT, SUBSCRIBE, settings, status, close",
            setup_up,
            setup_down,
            1,
            setup_up,
            setup_down,
        ),
        Line(
            f"{'HTTPS' if m.tls else 'HTTP'} enrollment ({m.enrollment_connections} requests)",
            enroll_up,
            enroll_down,
            1,
            enroll_up,
            enroll_down,
        ),
    ]
    notes = [
        f"readings: {len(batches)} batches in {hours:g} simulated hours "
        f"({m.instant_reads} instant samples read, {hours * 60:.0f} expected), "
        f"{batch_publish:.0f} B a batch as MQTT PUBLISH; month = bytes per simulated hour "
        f"x {MONTH_H:.0f} h; the first batch (a partial half hour after start-up) not in it"
        + (
            f"; {m.strays} one-sample batches that only the speed-up makes left out "
            "(a sample read during a publish; at real speed the next is 40 s away)"
            if m.strays
            else ""
        ),
        f"heartbeats: the agent times them in real seconds, so none falls in a simulated run; "
        f"each costs a measured batch exchange with the {m.status_publish}-byte Status PUBLISH "
        f"the agent sent at start instead of the {batch_publish:.0f}-byte batch, "
        f"{heartbeats:.0f} a month (a Status only on a change, else every {STATUS_MAX_S:.0f} s)",
        f"keep-alive: {m.keepalive_s} s from the agent's CONNECT; something is sent at least "
        f"every {silence:.0f} s, so {'no' if not pings else f'{pings:.0f}'} PINGREQ a month "
        f"(the run is too short for real-time pings; one would cost {ping_up:.0f} B up, "
        f"{ping_down:.0f} B down)",
        "session and enrollment: once a month (one restart a month)",
    ]
    if m.setup_overlap:
        notes.append(
            "warning: the first batch came while the session was starting; "
            "the session line may hold part of it"
        )
    return lines, notes


def naive_month(m: Measured) -> tuple[list[Line], list[str]]:
    run = m.naive
    assert run is not None
    up, down = sums(m.naive_steady)
    per_hour = run.messages / run.hours
    setup_up, setup_down = sums(m.naive_setup + m.naive_teardown)
    publishes = [p for p in m.naive_packets if p.up and p.kind == PUBLISH]
    size = statistics.fmean(p.size for p in publishes) if publishes else 0.0
    lines = [
        Line(
            "readings (one PUBLISH QoS 1 each, PUBACK)",
            up / max(1, run.messages),
            down / max(1, run.messages),
            per_hour * MONTH_H,
            up * MONTH_H / run.hours,
            down * MONTH_H / run.hours,
        ),
        Line("keep-alive PINGREQ/PINGRESP (60 s)", None, None, 0, 0, 0),
        Line(
            "MQTT session: TLS, CONNECT, close" if m.tls else "MQTT session: CONNECT, close",
            setup_up,
            setup_down,
            1,
            setup_up,
            setup_down,
        ),
    ]
    notes = [
        f"readings: {run.messages} messages in {run.hours:g} simulated hours at "
        f"{run.speed:,.0f}x ({size:.0f} B a PUBLISH); month = bytes per simulated hour "
        f"x {MONTH_H:.0f} h",
        "keep-alive: a PUBLISH every 60 s keeps a 60 s keep-alive from firing: counted as none "
        "(in its favour); no heartbeat, no enrollment (static credentials), one session a month",
    ]
    return lines, notes


def b(n: float | None) -> str:
    return "" if n is None else f"{n:,.0f}"


def kb(n: float) -> str:
    return f"{n / 1000:,.1f} kB"


def report(m: Measured) -> int:
    gw_lines, gw_notes = gateway_month(m)
    naive_lines, naive_notes = naive_month(m)
    if m.method == "capture":
        method = (
            f"packet capture on lo (AF_PACKET in this process), TCP to and from the "
            f"broker front door's and the server's {'HTTPS' if m.tls else 'HTTP'} port; "
            f"MSS {ETHERNET_MSS} (a 1,500-byte MTU path); ACKs as Linux sends them"
        )
    else:
        method = (
            "counting TCP relay: payload bytes and reads per direction, + 40 B IPv4/TCP "
            "header a read, one 40 B ACK back a read (delayed ACKs modelled as one a "
            "segment), SYN/SYN-ACK/ACK and FIN/ACK each way; TLS bytes as they pass"
        )
    security = (
        f"TLS both ways (HTTPS enrollment, MQTT over TLS; the gateway's MQTT negotiated "
        f"{m.tls_version}): records of "
        f"{TLS13_RECORD} B overhead each, handshakes with a 2-certificate ECDSA chain "
        f"({m.chain_bytes:,} B)"
        if m.tls
        else "no TLS (--no-tls): plain MQTT and HTTP"
    )
    print(
        f"Bytes per gateway per month ({MONTH_S // 86_400} days), IP level, both directions, "
        "as a cellular carrier bills them"
    )
    print(f"method:   {method}")
    print(f"security: {security}")
    print(
        f"gateway:  the default policy, {m.plan.hours:g} simulated "
        f"hour{'s' if m.plan.hours != 1 else ''} at "
        f"{m.plan.speed:,.0f}x ({m.speed_real_s:.0f} s real)"
    )
    print()
    header = ("kenshin gateway", "B up each", "B down each", "a month", "up/month", "down/month")
    rows = [header] + [
        (ln.what, b(ln.each_up), b(ln.each_down), b(ln.per_month), b(ln.up), b(ln.down))
        for ln in gw_lines
    ]
    gw_up, gw_down = sum(ln.up for ln in gw_lines), sum(ln.down for ln in gw_lines)
    rows.append(("total", "", "", "", b(gw_up), b(gw_down)))
    print_table(rows)
    for note in gw_notes:
        print(f"  {note}")
    print()
    rows = [
        ("naive JSON publisher", "B up each", "B down each", "a month", "up/month", "down/month")
    ]
    rows += [
        (ln.what, b(ln.each_up), b(ln.each_down), b(ln.per_month), b(ln.up), b(ln.down))
        for ln in naive_lines
    ]
    nv_up, nv_down = sum(ln.up for ln in naive_lines), sum(ln.down for ln in naive_lines)
    rows.append(("total", "", "", "", b(nv_up), b(nv_down)))
    print_table(rows)
    for note in naive_notes:
        print(f"  {note}")
    print()
    total, naive_total = gw_up + gw_down, nv_up + nv_down
    ratio = total / naive_total if naive_total else float("inf")
    verdict_bytes = "ok" if total <= GOAL_BYTES else "MISSED"
    verdict_ratio = "ok" if ratio <= GOAL_RATIO else "MISSED"
    print_table(
        [
            ("a month, 1 kB = 1,000 B", "uplink", "downlink", "total", "goal"),
            (
                "kenshin gateway",
                kb(gw_up),
                kb(gw_down),
                kb(total),
                f"<= {kb(GOAL_BYTES)}: {verdict_bytes}",
            ),
            ("naive JSON publisher", kb(nv_up), kb(nv_down), kb(naive_total), ""),
            (
                "kenshin / naive",
                f"1/{nv_up / gw_up:.1f}" if gw_up else "-",
                f"1/{nv_down / gw_down:.1f}" if gw_down else "-",
                f"1/{1 / ratio:.1f}" if ratio else "-",
                f"<= 1/20: {verdict_ratio}",
            ),
        ]
    )
    for note in m.notes:
        print(f"note: {note}")
    return 0


GATEWAY_SYSCTL = Path(__file__).resolve().parents[1] / "deploy/sysctl.d/60-kenshin-gateway.conf"
IN_NETNS = "KENSHIN_BENCH_NETNS"


def _gateway_sysctls() -> list[str]:
    lines = GATEWAY_SYSCTL.read_text().splitlines()
    return [line.replace(" ", "") for line in lines if line.strip() and line[0] not in "#;"]


def _in_gateway_network(argv: list[str]) -> int | None:
    """Run this bench again inside a private network namespace whose kernel has the
    gateway image's settings (deploy/sysctl.d): the gateway's TCP is then exactly what a
    deployed box speaks, and the host's settings stay untouched. Returns the child's exit
    code, or None where no namespace can be made (not root, no unshare)."""
    if os.environ.get(IN_NETNS) or not shutil.which("unshare"):
        return None
    setup = " && ".join(
        ["ip link set lo up", *(f"sysctl -qw {s}" for s in _gateway_sysctls()), 'exec "$0" "$@"']
    )
    command = ["unshare", "--net", "sh", "-c", setup, sys.executable, __file__, *argv]
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    return subprocess.run(command, env={**os.environ, IN_NETNS: "1"}).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--no-tls", action="store_true", help="plain MQTT and HTTP")
    parser.add_argument("--relay", action="store_true", help="count with a relay, not a capture")
    parser.add_argument(
        "--host-tcp",
        action="store_true",
        help="this host's TCP settings, not the gateway image's (deploy/sysctl.d)",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not args.host_tcp:
        code = _in_gateway_network(argv)
        if code is not None:
            return code
    quiet_logging()
    if os.environ.get(IN_NETNS):
        print(
            "network:  a private network namespace with the gateway image's kernel settings "
            f"({GATEWAY_SYSCTL.relative_to(GATEWAY_SYSCTL.parents[2])}: "
            + ", ".join(_gateway_sysctls())
            + ")"
        )
    else:
        timestamps = Path("/proc/sys/net/ipv4/tcp_timestamps").read_text().strip()
        print(f"network:  this host's TCP settings (net.ipv4.tcp_timestamps={timestamps})")
    plan = QUICK if args.quick else FULL
    measured = asyncio.run(measure(plan, tls_on=not args.no_tls, force_relay=args.relay))
    return report(measured)


if __name__ == "__main__":
    sys.exit(main())
