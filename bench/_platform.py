"""What the gateway benches share: the whole platform in this process, on loopback only.

- `Platform`: the server (HTTP or HTTPS on a free port, its embedded broker, SQLite), a
  tenant with an operator, and `add_gateway()`: a factory identity imported, claimed onto
  a site and given a meter, all through the REST API (in-process, so the API calls put no
  packet on the loopback the benches measure).
- `BrokerFront`: the broker's front door, as gateways see it in production: TLS ended by
  a load balancer in front of the broker (or a plain TCP relay), the MSS of an Ethernet
  path, one TLS record per MQTT packet, and a log of every MQTT packet that passes.
- `TlsFiles`: a root CA, an intermediate and an ECDSA P-256 leaf for 127.0.0.1, so the
  agent verifies the server exactly as it would a public one (`SSL_CERT_FILE`).
- `PhasedClock`: simulated time whose speed changes at planned moments; two processes that
  build it from the same numbers agree on the time (CLOCK_MONOTONIC is machine-wide).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the rest is imported where used: the footprint bench's child
    import httpx  # process takes PhasedClock from here and must not load the server
    import uvicorn

    from kenshin.gateway.identity import Identity
    from kenshin.server.runtime import BrokerEndpoint

ADMIN, OPERATOR, PASSWORD = (
    "root@bench.kenshin.test",
    "ops@bench.kenshin.test",
    "bench horse battery",
)
ETHERNET_MSS = 1460  # IPv4 over a 1500-byte MTU: what a cellular modem's path carries at most
SLOT_S = 1800


def quiet_logging() -> None:
    """Warnings from the gateway; only errors from the server side (the naive publisher's
    JSON is quarantined by the ingest, one warning a message otherwise)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("kenshin.server", "amqtt", "uvicorn", "uvicorn.error", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)


def scratch_dir(prefix: str, *, memory: bool = True) -> Path:
    """A temporary directory, in RAM (/dev/shm) when asked and available: SQLite commits
    with fsync, and the benches measure bytes, not the disk."""
    import tempfile

    base = "/dev/shm" if memory and Path("/dev/shm").is_dir() else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def listening_socket(mss: int | None) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 (free port) whose connections use `mss`:
    loopback's own MTU is 64 KiB, and a cellular path carries 1,460 bytes a segment."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if mss:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    return sock


# -- simulated time ---------------------------------------------------------------------------


class PhasedClock:
    """Simulated time from `start`, running `speed` simulated seconds a real second through
    `phases` [(real_s, speed), ...]; the last phase lasts for ever. `t0` is the
    time.monotonic() at which the simulated time is `start` (default: now)."""

    def __init__(
        self,
        start: datetime,
        phases: Sequence[tuple[float, float]] | float,
        *,
        t0: float | None = None,
    ):
        if isinstance(phases, int | float):
            phases = [(float("inf"), float(phases))]
        self.start = start
        self.t0 = time.monotonic() if t0 is None else t0
        self._segments: list[tuple[float, float, float]] = []  # (real from, sim from, speed)
        real = sim = 0.0
        for i, (real_s, speed) in enumerate(phases):
            if speed <= 0:
                raise ValueError(f"speed must be positive, got {speed}")
            self._segments.append((real, sim, float(speed)))
            if i == len(phases) - 1:
                break
            real, sim = real + real_s, sim + real_s * speed

    def sim_s(self, real: float) -> float:
        """Simulated seconds since `start` at monotonic time `real`."""
        since = real - self.t0
        for real_from, sim_from, speed in reversed(self._segments):
            if since >= real_from:
                return sim_from + (since - real_from) * speed
        return since * self._segments[0][2]

    def real_at(self, moment: datetime) -> float:
        """The monotonic time at which the simulated time reaches `moment`."""
        target = (moment - self.start).total_seconds()
        for real_from, sim_from, speed in reversed(self._segments):
            if target >= sim_from:
                return self.t0 + real_from + (target - sim_from) / speed
        return self.t0 + target / self._segments[0][2]

    def at(self, real: float) -> datetime:
        return self.start + timedelta(seconds=self.sim_s(real))

    def now(self) -> datetime:
        return self.at(time.monotonic())

    async def sleep_until(self, moment: datetime) -> None:
        while (left := self.real_at(moment) - time.monotonic()) > 0:
            await asyncio.sleep(left)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + timedelta(seconds=max(0.0, seconds)))


def next_slot(moment: datetime) -> datetime:
    """The first JST half-hour boundary after `moment` (JST is whole hours off UTC)."""
    seconds = int(moment.timestamp()) // SLOT_S * SLOT_S + SLOT_S
    return datetime.fromtimestamp(seconds, moment.tzinfo or UTC)


def slot_of(moment: datetime) -> datetime:
    seconds = int(moment.timestamp()) // SLOT_S * SLOT_S
    return datetime.fromtimestamp(seconds, moment.tzinfo or UTC)


# -- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the root the clients trust
    chain: Path  # leaf + intermediate, what the servers send
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.chain, self.key)
        return context

    @property
    def chain_der_bytes(self) -> int:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        certs = x509.load_pem_x509_certificates(self.chain.read_bytes())
        return sum(len(c.public_bytes(serialization.Encoding.DER)) for c in certs)


def make_tls_files(directory: Path) -> TlsFiles:
    """Root CA → intermediate → leaf for 127.0.0.1, all ECDSA P-256 (the shape of a public
    CA's ECDSA chain, minus its SCTs and policy extensions: about 1 KB lighter a handshake)."""
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, path_len=None, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        )
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = cert("Kenshin Bench Root", root_key, "Kenshin Bench Root", root_key, ca=True)
    mid = cert("Kenshin Bench CA 1", mid_key, "Kenshin Bench Root", root_key, ca=True, path_len=0)
    leaf = cert(
        "127.0.0.1",
        leaf_key,
        "Kenshin Bench CA 1",
        mid_key,
        ca=False,
        san=[x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")],
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(directory / "ca.pem", directory / "chain.pem", directory / "key.pem")
    files.ca.write_bytes(root.public_bytes(pem))
    files.chain.write_bytes(leaf.public_bytes(pem) + mid.public_bytes(pem))
    files.key.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


# -- the platform ------------------------------------------------------------------------------


class _AdvertisedService:
    """The device service as the enrollment endpoint sees it, telling gateways the front
    door's address instead of the broker's own (the server's ingest keeps the broker's)."""

    def __init__(self, service: Any, endpoint: BrokerEndpoint):
        self._service, self.endpoint = service, endpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)


class Platform:
    """The server in this process: `async with Platform(workdir) as platform: ...`."""

    def __init__(self, workdir: Path, *, tls: TlsFiles | None = None, mss: int | None = None):
        self.workdir, self.tls, self.mss = workdir, tls, mss
        self.app: Any = None
        self.http_port = 0
        self.base_url = ""
        self._web: uvicorn.Server | None = None
        self._serving: asyncio.Task | None = None
        self._admin: httpx.AsyncClient | None = None
        self._ops: httpx.AsyncClient | None = None

    @property
    def broker(self) -> BrokerEndpoint:
        """The embedded broker's own address (plain MQTT, on loopback)."""
        return self.app.state.device_service.endpoint

    async def __aenter__(self) -> Platform:
        import uvicorn

        from kenshin.server.app import create_app
        from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
        from kenshin.server.settings import Settings

        sock = listening_socket(self.mss)
        self.http_port = sock.getsockname()[1]
        settings = Settings(
            database_url=f"sqlite:///{self.workdir / 'kenshin.db'}",
            port=self.http_port,
            mqtt_port=0,
            secret_key_file=self.workdir / "secret.key",
            log_level="warning",
        )
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            ssl_certfile=str(self.tls.chain) if self.tls else None,
            ssl_keyfile=str(self.tls.key) if self.tls else None,
        )
        self._web = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._web.serve(sockets=[sock]))
        while not self._web.started:
            if self._serving.done():
                self._serving.result()  # raises what stopped it
            await asyncio.sleep(0.02)
        scheme = "https" if self.tls else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.http_port}"
        engine = self.app.state.engine
        ensure_admin(engine, ADMIN, PASSWORD)
        tenant = create_tenant(engine, "Bench Denryoku", "retailer")
        create_user(engine, tenant, OPERATOR, PASSWORD, role="operator")
        self._admin = await self._client(ADMIN)
        self._ops = await self._client(OPERATOR)
        return self

    async def _client(self, email: str) -> httpx.AsyncClient:
        import httpx

        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://kenshin.test"
        )
        answer = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        answer.raise_for_status()
        client.headers["X-CSRF-Token"] = answer.headers["X-CSRF-Token"]  # for its writes
        return client

    async def __aexit__(self, *exc: object) -> None:
        for client in (self._admin, self._ops):
            if client is not None:
                await client.aclose()
        if self._web is not None and self._serving is not None:
            self._web.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving

    def advertise(self, host: str, port: int, *, tls: bool) -> None:
        """From now on, enrollment tells gateways to connect to host:port (TLS or not)."""
        from kenshin.server.runtime import BrokerEndpoint

        service = self.app.state.device_service
        service = getattr(service, "_service", service)
        self.app.state.device_service = _AdvertisedService(service, BrokerEndpoint(host, port, tls))

    async def add_gateway(
        self, serial: str, meter: tuple[str, int] | None = None, *, server_url: str | None = None
    ) -> Identity:
        """A gateway as the factory makes it (enrolling at `server_url`, default the
        server's), imported, claimed onto a new site, and (with `meter`) given an ECHONET
        Lite/UDP meter at that address."""
        from kenshin.gateway.identity import Identity, new_claim_code
        from kenshin.wire.enrollment import b64encode

        assert self._admin is not None and self._ops is not None
        identity = Identity.generate(serial, server_url or self.base_url)
        code = new_claim_code()
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["serial", "model", "public_key", "claim_code"])
        writer.writerow([serial, "kenshin-gw", b64encode(identity.public_key), code])
        answer = await self._admin.post(
            "/api/v1/gateways/import",
            content=rows.getvalue(),
            headers={"content-type": "text/csv"},
        )
        answer.raise_for_status()
        site = await self._ops.post(
            "/api/v1/sites",
            json={
                "customer_id": f"C-{serial}",
                "service_code": f"pss{abs(hash(serial)) % 10**8:08d}",
                "address": "東京都千代田区1-1",
                "phone": "03-0000-0000",
            },
        )
        site.raise_for_status()
        gateway = await self._ops.post(
            "/api/v1/gateways/claim", json={"claim_code": code, "site_id": site.json()["id"]}
        )
        gateway.raise_for_status()
        if meter is not None:
            added = await self._ops.post(
                "/api/v1/meters",
                json={
                    "site_id": site.json()["id"],
                    "gateway_id": gateway.json()["id"],
                    "link": "udp",
                    "udp_host": meter[0],
                    "udp_port": meter[1],
                },
            )
            added.raise_for_status()
        return identity


# -- the broker's front door -----------------------------------------------------------------

MQTT_NAMES = {
    1: "CONNECT",
    2: "CONNACK",
    3: "PUBLISH",
    4: "PUBACK",
    5: "PUBREC",
    6: "PUBREL",
    7: "PUBCOMP",
    8: "SUBSCRIBE",
    9: "SUBACK",
    10: "UNSUBSCRIBE",
    11: "UNSUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    14: "DISCONNECT",
}


@dataclass(frozen=True)
class MqttPacket:
    t: float  # time.monotonic() when the front had it whole
    up: bool  # client → broker
    kind: int  # control packet type
    size: int  # the whole MQTT packet
    topic: str | None = None
    packet_id: int | None = None

    @property
    def name(self) -> str:
        return MQTT_NAMES.get(self.kind, str(self.kind))


@dataclass
class FrontConnection:
    client_port: int
    opened: float
    client_id: str | None = None
    keepalive_s: int | None = None
    tls_version: str | None = None
    packets: list[MqttPacket] = field(default_factory=list)


def split_mqtt(buffer: bytearray) -> list[bytes]:
    """Take every whole MQTT packet off the front of `buffer`."""
    out = []
    while len(buffer) >= 2:
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(buffer):
                return out
            byte = buffer[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not byte & 0x80:
                break
            if i > 4:
                raise ValueError("malformed MQTT remaining length")
        if len(buffer) < i + length:
            return out
        out.append(bytes(buffer[: i + length]))
        del buffer[: i + length]
    return out


def describe_mqtt(packet: bytes, up: bool, t: float) -> tuple[MqttPacket, dict[str, Any]]:
    kind = packet[0] >> 4
    i = 1
    while packet[i] & 0x80:
        i += 1
    body = i + 1
    extra: dict[str, Any] = {}
    topic = packet_id = None
    if kind == 3:
        (topic_len,) = struct.unpack_from("!H", packet, body)
        topic = packet[body + 2 : body + 2 + topic_len].decode(errors="replace")
        if (packet[0] >> 1) & 3:
            (packet_id,) = struct.unpack_from("!H", packet, body + 2 + topic_len)
    elif 4 <= kind <= 11:
        (packet_id,) = struct.unpack_from("!H", packet, body)
    elif kind == 1:
        (name_len,) = struct.unpack_from("!H", packet, body)
        at = body + 2 + name_len + 2  # protocol name, level, flags
        (extra["keepalive_s"], id_len) = struct.unpack_from("!HH", packet, at)
        extra["client_id"] = packet[at + 4 : at + 4 + id_len].decode(errors="replace")
    return MqttPacket(t, up, kind, len(packet), topic, packet_id), extra


class BrokerFront:
    """A TLS front door for the broker (or, with tls=None, a plain TCP relay): what a
    gateway connects to. It forwards MQTT packet by packet, each in its own write and so
    in its own TLS record, as Mosquitto writes them, and logs each packet per connection."""

    def __init__(self, broker: tuple[str, int], *, tls: TlsFiles | None, mss: int | None):
        self.broker, self.tls, self.mss = broker, tls, mss
        self.port = 0
        self.connections: dict[int, FrontConnection] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        sock = listening_socket(self.mss)
        self.port = sock.getsockname()[1]
        context = self.tls.server_context() if self.tls else None
        self._server = await asyncio.start_server(self._serve, sock=sock, ssl=context)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def of(self, client_id: str) -> list[FrontConnection]:
        return [c for c in self.connections.values() if c.client_id == client_id]

    def packets(self, client_id: str) -> list[MqttPacket]:
        return sorted((p for c in self.of(client_id) for p in c.packets), key=lambda p: p.t)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        port = writer.get_extra_info("peername")[1]
        conn = FrontConnection(port, time.monotonic())
        ssl_object = writer.get_extra_info("ssl_object")
        conn.tls_version = ssl_object.version() if ssl_object is not None else None
        self.connections[port] = conn
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.broker)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, conn, up=True),
                self._pump(up_reader, writer, conn, up=False),
            )
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (up_writer, writer):
                with contextlib.suppress(Exception):
                    w.close()
            if task is not None:
                self._tasks.discard(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: FrontConnection, up: bool
    ) -> None:
        buffer = bytearray()
        try:
            while data := await reader.read(65536):
                buffer += data
                for packet in split_mqtt(buffer):
                    described, extra = describe_mqtt(packet, up, time.monotonic())
                    conn.packets.append(described)
                    if "client_id" in extra:
                        conn.client_id = extra["client_id"]
                        conn.keepalive_s = extra["keepalive_s"]
                    writer.write(packet)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
