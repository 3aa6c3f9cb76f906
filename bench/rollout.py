"""A staged rollout over a fleet of lean gateways: `.venv/bin/python bench/rollout.py`.

`kenshin server run` (PostgreSQL, its managed Mosquitto, the periodic jobs on, the
rollouts job every second) and N lean gateways of `bench/fleet.py` (real enrollment, real
MQTT sessions with their own credentials), each of which also obeys the `update` command
as a gateway would say it did: the command's result, then `update_state` events
(downloading, installed, healthy) for the version. One gateway in ten is broken: it
reports `failed` (a broken gateway is the 3rd, 13th, 23rd... to be asked: of 200, the
first stage's two are whole and two of the second stage's eighteen are broken).

An operator starts a rollout through the API (stages 1, 10, 50, 100 %, a 5 % failure
threshold, a one-second soak): the server asks the first stage, advances by itself when
it is healthy, asks the second, and must halt there by itself: 2 of 18 failed is over
5 %. It prints a table (the stage it stopped at, why, the gateways asked, the time) and
exits 1 if the rollout did not halt at stage 2 or asked any gateway past it.

    --gateways N   (default 200)      --quick   40 gateways (stage 2: 3, one broken)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleet import (
    ADMIN,
    LeanGateway,
    Server,
    _all_connected,
    _database,
    _enroll_all,
    _fleet,
    _say,
)

VERSION = "9.9.9"
OPERATOR, PASSWORD = "ops@fleet.test", "rollout bench password"


class UpdatingGateway(LeanGateway):
    """A lean gateway that answers the `update` command as an agent would report it."""

    asked: list[str]  # serials in the order the update command reached them (shared)

    async def on_publish(self, topic: str, payload: bytes) -> None:
        from kenshin.updates.states import UPDATE_EVENT, UpdateState, state_detail
        from kenshin.wire import Command, CommandResult, Event, decode_publish, encode_publish

        _, message = decode_publish(topic, payload)
        if not isinstance(message, Command) or message.name != "update":
            return
        self.asked.append(self.serial)
        broken = len(self.asked) % 10 == 3
        result = CommandResult(message.id, True, {"accepted": message.args["version"]})
        steps = [UpdateState.DOWNLOADING, UpdateState.INSTALLED]
        steps.append(UpdateState.FAILED if broken else UpdateState.HEALTHY)
        messages = [result] + [
            Event(UPDATE_EVENT, int(time.time()), state_detail(
                message.args["version"], step, from_version="1.0.0",
                reason="the new version did not come up" if step == UpdateState.FAILED else "",
            ))
            for step in steps
        ]  # fmt: skip
        for reply in messages:
            await self.publish(*encode_publish(reply, self.serial))


async def rollout(base: str, fleet: list[UpdatingGateway]) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        answer = await api.post(
            "/api/v1/auth/login", json={"email": OPERATOR, "password": PASSWORD}
        )
        answer.raise_for_status()
        api.headers["X-CSRF-Token"] = answer.headers["X-CSRF-Token"]
        created = await api.post("/api/v1/rollouts", json={
            "version": VERSION, "stages": [1, 10, 50, 100], "failure_threshold_pct": 5,
            "soak_s": 1, "window_s": 0})  # fmt: skip
        assert created.status_code == 201, created.text
        url = f"/api/v1/rollouts/{created.json()['id']}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = (await api.get(url)).json()
            if state["state"] in ("halted", "done", "aborted"):
                await asyncio.sleep(3)  # three more job rounds: nobody else may be asked
                return (await api.get(url)).json()
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the rollout neither halted nor ended: {state}")


async def run(count: int, base: str) -> tuple[dict, list[str], float]:
    from kenshin.gateway.identity import Identity  # noqa: F401  (the agent's own package)

    keys = KEYS
    fleet = [
        UpdatingGateway(n, key.private_bytes_raw(), f"127.0.3.{1 + n % 250}")
        for n, key in enumerate(keys, 1)
    ]
    asked: list[str] = []
    for gateway in fleet:
        gateway.asked = asked
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        await _enroll_all(fleet, http)
        keepers = [asyncio.create_task(g.keep_connected(http)) for g in fleet]
        await _all_connected(fleet)
        _say(f"all {count} enrolled and connected")
        started = time.monotonic()
        try:
            result = await rollout(base, fleet)
        finally:
            for task in keepers:
                task.cancel()
    return result, asked, time.monotonic() - started


KEYS: list = []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="40 gateways")
    args = parser.parse_args(argv)
    count = 40 if args.quick else args.gateways
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally stops the server

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy import create_engine

    from kenshin.server.bootstrap import create_user

    KEYS.extend(Ed25519PrivateKey.generate() for _ in range(count))
    print(f"rollout: {count} gateways, one in ten broken", flush=True)
    name = f"kenshin_bench_rollout_{os.getpid()}"
    url = _database(name)
    _fleet(url, [k.public_key().public_bytes_raw() for k in KEYS])
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    create_user(engine, 1, OPERATOR, PASSWORD, "operator")
    engine.dispose()
    workdir = Path(tempfile.mkdtemp(prefix="kenshin-rollout-"))
    server = Server(url, workdir, "mosquitto", {"KENSHIN_JOBS": "true",
                                                  "KENSHIN_ROLLOUTS_EVERY_S": "1"})  # fmt: skip
    try:
        server.wait_ready()
        result, asked, took = asyncio.run(run(count, server.base))
    finally:
        server.stop()
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    stage2 = result["stages"][1]
    rows = [
        ("rollout", f"{result['state']} at stage {result['stage']}"),
        ("reason", result.get("reason") or ""),
        ("stage 2: gateways, failed", f"{stage2['gateways']}, {stage2['states'].get('failed', 0)}"),
        ("gateways asked", f"{len(asked)} of {count}"),
        ("started to halted", f"{took:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n| {'':<{width}} | lean gateways on Mosquitto |")
    print(f"|{'-' * (width + 2)}|{'-' * 28}|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    halted = result["state"] == "halted" and result["stage"] == 2
    within = len(asked) == sum(stage["gateways"] for stage in result["stages"][:2])
    print(f"rollout: halted at stage 2 by itself: {'yes' if halted else 'NO'}; "
          f"asked only stages 1-2: {'yes' if within else 'NO'}")  # fmt: skip
    return 0 if halted and within else 1


if __name__ == "__main__":
    sys.exit(main())
