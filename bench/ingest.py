"""Readings per second from MQTT to committed rows: `.venv/bin/python bench/ingest.py`.

The server's real MQTT side (`DeviceService` with a managed Mosquitto on a free port, its
ingest subscriber acknowledging only after each commit) writes into PostgreSQL
(127.0.0.1:5432, a database of its own). Gateway processes (other cores, so publishing does
not eat the ingest's) log in with their own MQTT credentials and publish real
`ReadingsBatch` payloads (30 instant readings each, the default half hour at 60 s) as
fast as QoS 1 lets them. The clock runs from the first publish until every reading is a
committed row. Beside it, in the same run, the same rows are written by one raw COPY
into the same (emptied) table: the ceiling.

Goal (issue 6): ≥ 50,000 readings/s end to end, and ≥ 30 % of the raw COPY.

    --gateways N --batches B   the load (100 gateways × 100 batches × 30 readings)
    --quick                    a few seconds: the smoke test's
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

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


def _publisher(host: str, port: int, gateways: list[int], batches: int, ready, go) -> None:
    """One process: its gateways connect, wait for the start, then publish everything."""
    import paho.mqtt.client as mqtt

    from kenshin.wire import encode_publish

    clients = []
    for n in gateways:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=_serial(n))
        client.username_pw_set(_serial(n), PASSWORD)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.connect(host, port, keepalive=600)
        client.loop_start()
        clients.append((n, client))
    payloads = {n: [encode_publish(_batch(n, k), _serial(n)) for k in range(batches)]
                for n, _ in clients}  # fmt: skip
    ready.wait()
    go.wait()
    infos = []
    for k in range(batches):
        for n, client in clients:
            topic, payload = payloads[n][k]
            infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=600)
    for _, client in clients:
        client.loop_stop()
        client.disconnect()


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


def _raw_copy(url: str, gateways: int, batches: int) -> float:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE readings_instant")
        conn.commit()
        rows = [
            (n, datetime.fromtimestamp(s.at_s, UTC), s.power_w, s.current_r_da, s.current_t_da)
            for n in range(1, gateways + 1)
            for k in range(batches)
            for s in _batch(n, k).instant
        ]
        started = time.perf_counter()
        with cur.copy("COPY readings_instant (meter_id, at, power_w, current_r_da, "
                      "current_t_da) FROM STDIN") as copy:  # fmt: skip
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return len(rows) / (time.perf_counter() - started)


async def _end_to_end(url: str, gateways: int, batches: int, processes: int) -> tuple[float, dict]:
    from kenshin.server.db import make_engine
    from kenshin.server.runtime import DeviceService
    from kenshin.server.security import CredentialBox

    engine = make_engine(url)
    service = DeviceService(engine, CredentialBox(os.urandom(32)), mode="mosquitto", port=0)
    await service.start()
    try:
        await asyncio.sleep(1.0)  # the ingest subscribed
        host, port = service.endpoint.host, service.endpoint.port
        ctx = multiprocessing.get_context("spawn")
        ready, go = ctx.Barrier(processes + 1), ctx.Event()
        shares = [list(range(1 + i, gateways + 1, processes)) for i in range(processes)]
        workers = [ctx.Process(target=_publisher, args=(host, port, share, batches, ready, go))
                   for share in shares if share]  # fmt: skip
        for worker in workers:
            worker.start()
        await asyncio.to_thread(ready.wait)
        total = gateways * batches * PER_BATCH
        started = time.perf_counter()
        go.set()
        last_report = started
        while (done := await asyncio.to_thread(_count, url)) < total:
            await asyncio.sleep(0.2)
            if time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                print(f"  {done:,}/{total:,} readings committed "
                      f"({last_report - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
            if time.perf_counter() - started > 1800:
                raise TimeoutError(f"only {done:,} of {total:,} readings after 30 minutes")
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.join(timeout=60)
        return total / elapsed, dict(service.counters)
    finally:
        await service.stop()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--processes", type=int, default=1, help="publisher processes")
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
    rate, counters = asyncio.run(_end_to_end(url, args.gateways, args.batches, args.processes))
    copy_rate = _raw_copy(url, args.gateways, args.batches)
    share = rate / copy_rate
    print(f"ingest on PostgreSQL, {total:,} readings ({args.gateways} gateways × "
          f"{args.batches} batches × {PER_BATCH}), one run")  # fmt: skip
    print(f"{'path':<48} {'readings/s':>12} {'goal':>24}")
    print(f"{'MQTT → ingest → committed rows (end to end)':<48} {rate:>12,.0f} "
          f"{'>= 50,000: ' + ('ok' if rate >= 50_000 else 'MISSED'):>24}")  # fmt: skip
    print(f"{'raw COPY of the same rows, same table':<48} {copy_rate:>12,.0f}")
    print(f"{'end to end / raw COPY':<48} {share:>12.1%} "
          f"{'>= 30%: ' + ('ok' if share >= 0.3 else 'MISSED'):>24}")  # fmt: skip
    print(f"ingest counters: {counters}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
