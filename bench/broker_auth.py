"""RabbitMQ's questions to the server, answered per second: `.venv/bin/python bench/broker_auth.py`.

A gateway's login costs the cluster's nodes up to ten HTTP questions to the server (its
user, the vhost, its queue three times, the exchange, its topics: docs/scaling.md), and a
node lost with a third of 20,000 gateways on it means tens of thousands of them within a
minute. The server answers them in `BrokerAuthAnswers`
(src/kenshin/server/broker/rabbitmq_auth.py), in front of the application's middleware and
router. This starts `kenshin server run` (SQLite, devices and jobs off, broker_auth http)
and asks, from 16 keep-alive connections (bench/api_load.py's light client), for
--seconds each: a question answered without the database (`resource`), one that reads it
(`user`), and `/livez`, the lightest request that goes through the whole application: the
ratio is what the short path saves.

    --quick   1 s each
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_load import Connection
from kenshin.cli.ports import free_tcp_port

CONNECTIONS = 16
QUESTIONS = {
    "resource (no database)": (
        "/broker/auth/resource",
        b"username=FLEET000001&vhost=%2F&resource=queue"
        b"&name=mqtt-subscription-FLEET000001qos0&permission=configure",
    ),
    "user (reads the database)": (
        "/broker/auth/user",
        b"username=FLEET000001&password=not-it&client_id=FLEET000001",
    ),
    "/livez (the whole application)": ("/livez", None),
}


async def rate(base: str, path: str, form: bytes | None, seconds: float) -> float:
    done, end = 0, time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        connection = Connection(base, {})
        try:
            while time.monotonic() < end:
                status = await (connection.post_form(path, form) if form else connection.get(path))
                assert status == 200, (path, status)
                done += 1
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return done / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="1 s each")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    work, port = Path(tempfile.mkdtemp(prefix="kenshin-authbench-")), free_tcp_port()
    env = os.environ | {
        "KENSHIN_DATABASE_URL": f"sqlite:///{work / 'k.db'}",
        "KENSHIN_PORT": str(port),
        "KENSHIN_SECRET_KEY_FILE": str(work / "secret.key"),
        "KENSHIN_BROKER": "mqtt://kenshin-service:bench@127.0.0.1:1",
        "KENSHIN_BROKER_AUTH": "http",
        "KENSHIN_DEVICES": "false",
        "KENSHIN_JOBS": "false",
        "KENSHIN_LOG_LEVEL": "warning",
    }
    log = (work / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "kenshin", "server", "run"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_ready(base, server))
        rates = {name: asyncio.run(rate(base, *q, seconds)) for name, q in QUESTIONS.items()}
    finally:
        server.terminate()
        server.wait(30)
    whole = rates["/livez (the whole application)"]
    print(f"broker auth answers: {CONNECTIONS} connections, {seconds:g} s each\n")
    print(f"| {'question':<32} | {'answers/s':>9} | {'/ livez':>7} |")
    print(f"|{'-' * 34}|{'-' * 11}|{'-' * 9}|")
    for name, per_s in rates.items():
        print(f"| {name:<32} | {per_s:>9.0f} | {per_s / whole:>6.1f}× |")
    return 0


async def _wait_ready(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server did not start")
        probe = Connection(base, {})
        try:
            if await probe.get("/livez", timeout_s=2) == 200:
                return
        except (OSError, TimeoutError):
            await asyncio.sleep(0.2)
        finally:
            probe.close()
    raise SystemExit("the server is not ready")


if __name__ == "__main__":
    sys.exit(main())
