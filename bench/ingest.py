"""Readings per second from MQTT to committed rows: `.venv/bin/python bench/ingest.py`.

The server's real MQTT side (`DeviceService` with a managed Mosquitto on a free port, its
ingest subscriber acknowledging only after each commit) writes into PostgreSQL
(127.0.0.1:5432, a database of its own). Simulated gateways, in a process of their own,
log in with their own MQTT credentials and publish real `ReadingsBatch` payloads encoded
by `kenshin.wire` (30 instant readings each, the default half hour at 60 s), all at once
at QoS 1, through a lean MQTT client (see `_publisher`). The clock runs from the first
publish until every reading is a committed row. Beside it, in the same run, the same rows
are written by one raw COPY into the same (emptied) table, as text rows and in the binary
format: the faster is the ceiling the end-to-end rate is held against.

Goal (issue 6): ≥ 50,000 readings/s end to end, and ≥ 30 % of the raw COPY.

    --gateways N --batches B   the load (100 gateways × 100 batches × 30 readings)
    --quick                    a few seconds: the smoke test's
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import struct
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench._mqtt import connect_packet, publish_packet

ADMIN = os.environ.get("KENSHIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "bench-gateway-password"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
PER_BATCH = 30


def _serial(n: int) -> str:
    return f"BENCH{n:05d}"


def _batch(n: int, k: int):
    from kenshin.wire import InstantSample, ReadingsBatch

    start = int((T0 + timedelta(minutes=30 * k)).timestamp())
    samples = tuple(
        InstantSample(start + 60 * i, 300 + (n * 7 + k * 13 + i * 31) % 2000, 30, 30)
        for i in range(PER_BATCH)
    )
    return ReadingsBatch(k + 1, f"m{n}", samples)


@dataclass
class _Gateway:
    """One simulated gateway's MQTT connection, logged in, and its publishes ready."""

    n: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    publishes: bytes

    @classmethod
    async def log_in(cls, host: str, port: int, n: int, batches: int) -> _Gateway:
        from kenshin.wire import encode_publish

        reader, writer = await asyncio.open_connection(host, port)
        writer.write(connect_packet(_serial(n), _serial(n), PASSWORD))
        if (connack := await reader.readexactly(4)) != b"\x20\x02\x00\x00":
            raise ConnectionError(f"{_serial(n)}: CONNACK {connack.hex()}")
        packets = [
            publish_packet(*encode_publish(_batch(n, k), _serial(n)), packet_id=k + 1)
            for k in range(batches)
        ]
        return cls(n, reader, writer, b"".join(packets))

    async def publish(self, batches: int) -> None:
        """Everything at once (QoS 1), then every PUBACK, in order."""
        self.writer.write(self.publishes)
        acks = await self.reader.readexactly(4 * batches)
        if acks != b"".join(b"\x40\x02" + struct.pack("!H", k + 1) for k in range(batches)):
            raise ConnectionError(f"{_serial(self.n)}: unexpected answers to its publishes")
        self.writer.write(b"\xe0\x00")  # DISCONNECT
        await self.writer.drain()
        self.writer.close()


def _publisher(host: str, port: int, gateways: list[int], batches: int, ready, go) -> None:
    """One process of gateways. A lean client (pre-encoded packets on plain sockets, one
    thread): the gateways' CPU is not the server's, and on a two-core machine a heavier
    client (paho: a thread a connection) would take it from the ingest being measured."""

    async def run() -> None:
        logins = [_Gateway.log_in(host, port, n, batches) for n in gateways]
        connected = await asyncio.gather(*logins)
        await asyncio.to_thread(ready.wait)
        await asyncio.to_thread(go.wait)
        await asyncio.gather(*(gateway.publish(batches) for gateway in connected))

    asyncio.run(run())


def _database(name: str) -> str:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return ADMIN.rsplit("/", 1)[0] + "/" + name


def _fleet(url: str, gateways: int) -> None:
    from kenshin.server.broker.access import hash_password
    from kenshin.server.db import make_engine, migrate
    from kenshin.server.metering.partitions import ensure_partitions

    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        ensure_partitions(conn, T0)
    engine.dispose()
    secret = hash_password(PASSWORD)  # one hash for all: the bench is about the ingest
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO tenants (id, name, kind, created_at) "
                    "VALUES (1, 'Bench', 'retailer', %s)", (now,))  # fmt: skip
        for n in range(1, gateways + 1):
            cur.execute(
                "INSERT INTO sites (id, tenant_id, customer_id, service_code, created_at) "
                "VALUES (%s, 1, %s, %s, %s)", (n, f"C{n}", f"pss{n:08d}", now))  # fmt: skip
            cur.execute(
                "INSERT INTO gateways (id, serial, model, public_key, tenant_id, site_id, "
                "mqtt_username, mqtt_password_hash, state, state_since, created_at) VALUES "
                "(%s, %s, 'bench', %s, 1, %s, %s, %s, 'working', %s, %s)",
                (n, _serial(n), bytes(32), n, _serial(n), secret, now, now),
            )  # fmt: skip
            cur.execute(
                "INSERT INTO meters (id, tenant_id, site_id, gateway_id, link, udp_host, "
                "created_at) VALUES (%s, 1, %s, %s, 'udp', '127.0.1.1', %s)",
                (n, n, n, now),
            )


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM readings_instant").fetchone()[0]


def _raw_copy(url: str, gateways: int, batches: int) -> dict[str, float]:
    """Rows/s of one COPY of every reading into the emptied table, each way a client can
    send it: text rows from psycopg's `write_row`, and the binary format (encoded by the
    ingest's own `binary_copy`, the encoding included in the time)."""
    from kenshin.server.ingest import binary_copy

    readings = [
        (n, s.at_s, s.power_w, s.current_r_da, s.current_t_da)
        for n in range(1, gateways + 1)
        for k in range(batches)
        for s in _batch(n, k).instant
    ]
    as_datetimes = [(n, datetime.fromtimestamp(at, UTC), *rest) for n, at, *rest in readings]
    columns = "meter_id, at, power_w, current_r_da, current_t_da"
    rates = {}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for way in ("text", "binary"):
            cur.execute("TRUNCATE readings_instant")
            conn.commit()
            started = time.perf_counter()
            if way == "text":
                with cur.copy(f"COPY readings_instant ({columns}) FROM STDIN") as copy:
                    for row in as_datetimes:
                        copy.write_row(row)
            else:
                data = binary_copy(readings)
                with cur.copy(f"COPY readings_instant ({columns}) FROM STDIN (FORMAT BINARY)") as c:
                    c.write(data)
            conn.commit()
            rates[way] = len(readings) / (time.perf_counter() - started)
    return rates


def _ingest_worker(url: str, host: str, port: int, login: tuple[str, str], node: int,
                   committed, stop) -> None:  # fmt: skip
    """Another ingest process on the same broker (the server scaled out: its workers share
    the readings through `$share/ingest/...`), reporting its committed batches."""
    from kenshin.server.db import make_engine
    from kenshin.server.runtime import BrokerEndpoint, DeviceService
    from kenshin.server.security import CredentialBox

    async def run() -> None:
        engine = make_engine(url)
        service = DeviceService(engine, CredentialBox(os.urandom(32)), mode="external",
                                node_name=f"bench-{node}", endpoint=BrokerEndpoint(host, port),
                                service_login=login)  # fmt: skip
        await service.start()
        try:
            while not stop.is_set():
                committed.value = service.counters.get("readings", 0)
                await asyncio.sleep(0.01)
        finally:
            await service.stop()
            engine.dispose()

    asyncio.run(run())


async def _end_to_end(
    url: str, gateways: int, batches: int, processes: int, ingesters: int
) -> tuple[float, dict]:
    from kenshin.server.db import make_engine
    from kenshin.server.runtime import SERVICE_USER, DeviceService
    from kenshin.server.security import CredentialBox

    engine = make_engine(url)
    service = DeviceService(engine, CredentialBox(os.urandom(32)), mode="mosquitto", port=0)
    await service.start()
    try:
        await asyncio.wait_for(service.subscribed.wait(), 30)
        host, port = service.endpoint.host, service.endpoint.port
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        counts = [ctx.Value("q", 0) for _ in range(ingesters - 1)]
        login = (SERVICE_USER, service._service_password)
        helpers = [ctx.Process(target=_ingest_worker, args=(url, host, port, login, i, c, stop))
                   for i, c in enumerate(counts, start=2)]  # fmt: skip
        for helper in helpers:
            helper.start()
        await asyncio.sleep(3 if helpers else 0)  # their subscriptions join the share
        ready, go = ctx.Barrier(processes + 1), ctx.Event()
        shares = [list(range(1 + i, gateways + 1, processes)) for i in range(processes)]
        workers = [ctx.Process(target=_publisher, args=(host, port, share, batches, ready, go))
                   for share in shares if share]  # fmt: skip
        for worker in workers:
            worker.start()
        await asyncio.to_thread(ready.wait)
        messages, total = gateways * batches, gateways * batches * PER_BATCH
        started = time.perf_counter()
        go.set()
        last_report = started

        # The ingest counts a message once its transaction committed (and it was acked):
        # watching that costs the database nothing, where counting rows would.
        def committed() -> int:
            return service.counters.get("readings", 0) + sum(c.value for c in counts)

        while (done := committed()) < messages:
            await asyncio.sleep(0.01)
            if time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                print(f"  {done * PER_BATCH:,}/{total:,} readings committed "
                      f"({last_report - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
            if time.perf_counter() - started > 1800:
                raise TimeoutError(f"only {done:,} of {messages:,} batches after 30 minutes")
        elapsed = time.perf_counter() - started
        stop.set()
        for worker in workers + helpers:
            worker.join(timeout=60)
        if (rows := _count(url)) != total:
            raise AssertionError(f"{rows:,} rows for {total:,} readings")
        shares = [service.counters.get("readings", 0)] + [c.value for c in counts]
        return total / elapsed, dict(service.counters) | {"batches by ingest process": shares}
    finally:
        await service.stop()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--processes", type=int, default=1, help="publisher processes")
    parser.add_argument(
        "--ingesters",
        type=int,
        default=min(os.cpu_count() or 1, 2),
        help="ingest processes sharing the readings (the server scaled out; default: 2)",
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.gateways, args.batches = 5, 4
    url = _database("kenshin_bench_ingest" + ("_quick" if args.quick else ""))
    _fleet(url, args.gateways)
    total = args.gateways * args.batches * PER_BATCH
    print(
        f"{total:,} readings from {args.gateways} gateways ({args.batches} batches of "
        f"{PER_BATCH} each), MQTT QoS 1 via Mosquitto, into PostgreSQL",
        file=sys.stderr,
    )
    rate, counters = asyncio.run(
        _end_to_end(url, args.gateways, args.batches, args.processes, args.ingesters)
    )
    copy_rates = _raw_copy(url, args.gateways, args.batches)
    share = rate / max(copy_rates.values())  # against the faster way: the ceiling
    print(f"ingest on PostgreSQL, {total:,} readings ({args.gateways} gateways × "
          f"{args.batches} batches × {PER_BATCH}), one run")  # fmt: skip
    print(f"{'path':<50} {'readings/s':>12} {'goal':>24}")
    what = f"MQTT → {args.ingesters} ingest process{'es' if args.ingesters > 1 else ''} → rows"
    print(f"{what:<50} {rate:>12,.0f} "
          f"{'>= 50,000: ' + ('ok' if rate >= 50_000 else 'MISSED'):>24}")  # fmt: skip
    print(f"{'raw COPY of the same rows, same table (text)':<50} {copy_rates['text']:>12,.0f}")
    print(f"{'raw COPY of the same rows, same table (binary)':<50} {copy_rates['binary']:>12,.0f}")
    print(f"{'end to end / raw COPY (the faster)':<50} {share:>12.1%} "
          f"{'>= 30%: ' + ('ok' if share >= 0.3 else 'MISSED'):>24}")  # fmt: skip
    print(f"ingest counters: {counters}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
