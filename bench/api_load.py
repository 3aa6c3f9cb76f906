"""The API under load, through the real server: `.venv/bin/python bench/api_load.py`.

The database is bench/queries.py's (10,000 meters × 90 days in PostgreSQL, built once by
its builder and kept: `kenshin_bench_queries` unless --database names another). The server
is `kenshin server run` in its production shape (--workers, default: one per core) on a free
port of the loopback, its clock pinned to the data's day (bench/_clocked_server.py), devices
and jobs off (this measures the API). An asyncio load generator in this process (keep-alive
connections read by httptools' parser, on uvloop: it shares the cores with the server, so
it is kept light; each query's answer is first checked whole with httpx) runs 1, 10, 50,
100 and 200 clients for --seconds each; every client sends its next request when the last
is answered, cycling through the query bench's queries (the CSV one at its share). First,
the same with one process and one client: the figure the others are compared with.

Prints req/s, p50, p95, p99 and the slowest, errors (not 200, or no answer), the ratio to
one process and one client, and the CPU time a request of the server's processes (read
from /proc: on a machine shared with other work, a steadier figure than the rates) and of
the load generator. Goals (issue 21): at 100 and 200 clients no error and nothing
over 5 s; at 50 clients at least 250 req/s with p95 under 250 ms.

    --quick   200 meters × 3 days, 2 s a level: the smoke test's
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httptools
import httpx

from bench import queries
from kenshin.server import accounts
from kenshin.server.db import make_engine

SERVER = Path(__file__).resolve().parent / "_clocked_server.py"
LEVELS = (1, 10, 50, 100, 200)
SLOW_S = 5.0
T = TypeVar("T")


def cpu_s(pid: int) -> float:
    """CPU time (user and system, s) of process `pid` and all its descendants; 0 without
    /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = []
    for task in tasks:
        with suppress(OSError):
            children += (task / "children").read_text().split()
    return own + sum(cpu_s(int(child)) for child in children)


@contextmanager
def server(url: str, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """`kenshin server run --workers N` on a free port until the block ends; its base URL
    and process id."""
    env = {
        **os.environ,
        "KENSHIN_DATABASE_URL": url,
        "KENSHIN_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KENSHIN_DEVICES": "false",
        "KENSHIN_JOBS": "false",
        "KENSHIN_AUTO_MIGRATE": "false",
        "KENSHIN_LOG_LEVEL": "warning",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KENSHIN_CONFIG", None)
    command = [sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", "0",
               "--workers", str(workers)]  # fmt: skip
    with log.open("a") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
    try:
        for line in proc.stdout:  # printed once every worker is ready
            if "listening on" in line:
                break
        else:
            raise SystemExit(f"the server did not start: see {log}")
        yield line.split("listening on ")[1].split()[0], proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@dataclass
class Level:
    clients: int
    seconds: float
    latencies: list[float]  # s, of every request answered or failed
    errors: int
    own_cpu_s: float = 0.0  # the load generator's: it shares the machine's cores
    server_cpu_s: float = 0.0  # the server's processes'

    @property
    def own_ms(self) -> float:
        return self.own_cpu_s * 1000 / max(1, len(self.latencies))

    @property
    def server_ms(self) -> float:
        return self.server_cpu_s * 1000 / max(1, len(self.latencies))

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def mix(meters: int, days: int) -> list[str]:
    """The queries' URLs, each as often as its share (the CSV 1 in 5 of the others)."""
    out = []
    for query in queries.queries(meters, days):
        url = str(httpx.URL(query.path, params={k: str(v) for k, v in query.params.items()}))
        out += [url] * round(5 * query.runs_share)
    return out


async def check(base: str, key: str, meters: int, days: int) -> None:
    """Each query's answer is the full one (as the query bench checks it)."""
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60) as client:  # fmt: skip
        for query in queries.queries(meters, days):
            params = {k: str(v) for k, v in query.params.items()}
            answer = await client.get(query.path, params=params)
            if answer.status_code != 200 or not query.check(answer):
                raise SystemExit(f"{query.label}: {answer.status_code} {answer.text[:300]}")


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads each answer whole
    (httptools' parser, in C; chunked answers too), counting its bytes.

    Why not httpx: on 2 cores the load generator shares the machine with the server, and
    httpx cost ~1.3 ms of CPU a request, as much as a third of the server's own; this costs
    a tenth of that. The answers are checked whole with httpx first (`check`)."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        url = httpx.URL(base)
        self.address = (url.host, url.port)
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": url.netloc.decode(),
                            **headers}.items()).encode()  # fmt: skip
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.complete = False
        self.received = 0

    # httptools' callbacks
    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    async def get(self, path: str, timeout_s: float = 60.0) -> int:
        """The answer's status; an exception when there is no whole answer."""
        return await self.send(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.head + b"\r\n")

    async def post_form(self, path: str, form: bytes, timeout_s: float = 60.0) -> int:
        """A POST of a urlencoded form (bench/broker_auth.py: as RabbitMQ asks)."""
        head = f"POST {path} HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        length = f"Content-Length: {len(form)}\r\n\r\n"
        return await self.send(head.encode() + self.head + length.encode() + form, timeout_s)

    async def send(self, request: bytes, timeout_s: float = 60.0) -> int:
        """One whole request out, its answer's status back."""
        try:
            async with asyncio.timeout(timeout_s):
                if self.streams is None:
                    self.streams = await asyncio.open_connection(*self.address)
                reader, writer = self.streams
                writer.write(request)
                parser = httptools.HttpResponseParser(self)
                self.complete = False
                while not self.complete:
                    data = await reader.read(1 << 16)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    parser.feed_data(data)
            if not parser.should_keep_alive():
                self.close()
            return parser.get_status_code()
        except BaseException:
            self.close()  # whatever was half read is of no use to the next request
            raise

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def load(
    base: str, pid: int, key: str, urls: list[str], clients: int, seconds: float
) -> Level:
    # A connection of its own for each client, made before the clock starts.
    pool = [Connection(base, {"Authorization": f"Bearer {key}"}) for _ in range(clients)]
    latencies: list[float] = []
    errors = 0
    cpu, server_cpu = time.process_time(), cpu_s(pid)
    started = time.perf_counter()
    deadline = started + seconds

    async def client_loop(n: int, client: Connection) -> None:
        nonlocal errors
        i = n * 7  # the clients start at different places of the mix
        while time.perf_counter() < deadline:
            url = urls[i % len(urls)]
            i += 1
            sent = time.perf_counter()
            try:
                ok = await client.get(url) == 200
            except (OSError, TimeoutError, httptools.HttpParserError):
                ok = False
            latencies.append(time.perf_counter() - sent)
            errors += not ok

    await asyncio.gather(*(client_loop(n, c) for n, c in enumerate(pool)))
    elapsed = time.perf_counter() - started
    level = Level(clients, elapsed, latencies, errors, time.process_time() - cpu,
                  cpu_s(pid) - server_cpu)  # fmt: skip
    for client in pool:
        client.close()
    return level


def run(work: Coroutine[Any, Any, T]) -> T:
    """`work` on uvloop where it is installed (as the server runs): the load generator's
    own CPU a request is then about half of asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--database", default="kenshin_bench_queries")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.meters, args.days, args.seconds = 200, 3, 2.0
        args.database += "_quick"
    levels = [int(n) for n in args.levels.split(",")]
    url = queries.database(args.database, args.meters, args.days, args.rebuild)
    engine = make_engine(url)
    with engine.begin() as conn:
        _, key = accounts.insert_api_key(conn, 1, "api-load", "viewer")
    engine.dispose()
    urls = mix(args.meters, args.days)
    log = Path(tempfile.gettempdir()) / "kenshin-api-load.log"
    with server(url, 1, log) as (base, pid):
        run(check(base, key, args.meters, args.days))
        one = run(load(base, pid, key, urls, 1, args.seconds))
    results = []
    with server(url, args.workers, log) as (base, pid):
        for clients in levels:
            results.append(run(load(base, pid, key, urls, clients, args.seconds)))
    print(f"API load: {args.meters:,} meters × {args.days} days on PostgreSQL; the 6 JSON "
          f"queries and the CSV (1 in {len(urls)}) of bench/queries.py; {args.seconds:g} s "
          f"a level; kenshin server run --workers {args.workers}; server log: {log}")  # fmt: skip
    print(f"{'clients':>12} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'errors':>7} {'> 5 s':>6} {'× 1 proc':>8} "
          f"{'server CPU ms/req':>17} {'load gen ms/req':>15}")  # fmt: skip
    rows = [("1 process, 1", one), *((f"{r.clients}", r) for r in results)]
    for label, r in rows:
        slow = sum(t > SLOW_S for t in r.latencies)
        print(f"{label:>12} {r.rate:>7.0f} {r.quantile(0.5):>7.1f} {r.quantile(0.95):>7.1f} "
              f"{r.quantile(0.99):>7.1f} {max(r.latencies) * 1000:>7.0f} {r.errors:>7} "
              f"{slow:>6} {r.rate / one.rate:>8.2f} {r.server_ms:>17.2f} "
              f"{r.own_ms:>15.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
