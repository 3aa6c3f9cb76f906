"""End to end, in one process but over real sockets: the server (HTTP on a free port,
its broker, SQLite or PostgreSQL), a simulated meter on UDP, and a gateway agent that
knows only its identity file. The gateway is claimed through the API, configures itself,
its readings arrive, a settings change reaches it in seconds, commands come back."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from kenshin.cli.ports import free_tcp_port
from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.enroll import Unclaimed, enroll_once
from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.server import schema as s
from kenshin.server.app import create_app
from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
from kenshin.server.settings import Settings
from kenshin.sim.clock import JST, ScaledClock
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig
from kenshin.wire.enrollment import b64encode
from tests.support import eventually, free_udp_port, run

pytestmark = pytest.mark.slow  # the whole stack, in simulated real time

ADMIN, OPERATOR, PASSWORD = "root@example.jp", "ops@example.jp", "correct horse battery"
SPEED = 300.0  # five simulated minutes a second: a half hour in six seconds


@contextlib.asynccontextmanager
async def server(database_url: str, broker: str, tmp_path) -> AsyncIterator[tuple]:
    port = free_tcp_port()
    settings = Settings(
        database_url=database_url,
        port=port,
        broker=broker,
        secret_key_file=tmp_path / "secret.key",
        mqtt_port=0,
    )
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    web = uvicorn.Server(config)
    task = asyncio.create_task(web.serve())
    await eventually(lambda: web.started, timeout_s=20)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        web.should_exit = True
        await task


async def login(client: httpx.AsyncClient, email: str) -> None:
    answer = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.headers["X-CSRF-Token"]


@pytest.mark.parametrize(
    ("broker", "database"), [("embedded", "sqlite"), ("mosquitto", "postgresql")]
)
def test_a_gateway_with_only_its_identity_file_delivers_readings(
    tmp_path, broker, database, request
):
    if database == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'kenshin.db'}"

    async def scenario():
        async with server(url, broker, tmp_path) as (app, base):
            engine = app.state.engine
            ensure_admin(engine, ADMIN, PASSWORD)
            tenant = create_tenant(engine, "Denryoku Co.", "retailer")
            create_user(engine, tenant, OPERATOR, PASSWORD, role="operator")

            # The factory made a box: an identity file, and a CSV row for the server.
            identity = Identity.generate("GW0001", base)
            code = new_claim_code()
            rows = io.StringIO()
            writer = csv.writer(rows)
            writer.writerow(["serial", "model", "public_key", "claim_code"])
            writer.writerow(["GW0001", "kenshin-gw", b64encode(identity.public_key), code])
            async with httpx.AsyncClient(base_url=base) as root:
                await login(root, ADMIN)
                answer = await root.post(
                    "/api/v1/gateways/import",
                    content=rows.getvalue(),
                    headers={"content-type": "text/csv"},
                )
                assert answer.json()["added"] == 1, answer.text

            # Plugged in before anyone claimed it: told to wait.
            assert isinstance(await enroll_once(identity), Unclaimed)

            # A meter on the LAN (the simulator) and the retailer's records.
            clock = ScaledClock(datetime(2026, 7, 1, 9, 58, tzinfo=JST), speed=SPEED)
            meter_port = free_udp_port("127.0.1.1")
            fleet = SimFleet(1, clock, port=meter_port, config=MeterConfig(seed=3, pv=True))
            async with fleet, httpx.AsyncClient(base_url=base) as ops:
                await login(ops, OPERATOR)
                site = (
                    await ops.post(
                        "/api/v1/sites",
                        json={
                            "customer_id": "C-001",
                            "service_code": "pss00000001",
                            "address": "東京都千代田区1-1",
                            "phone": "03-0000-0000",
                        },
                    )
                ).json()
                gateway = (
                    await ops.post(
                        "/api/v1/gateways/claim", json={"claim_code": code, "site_id": site["id"]}
                    )
                ).json()
                assert gateway["state"] == "never_seen"
                meter = (
                    await ops.post(
                        "/api/v1/meters",
                        json={
                            "site_id": site["id"],
                            "gateway_id": gateway["id"],
                            "link": "udp",
                            "udp_host": "127.0.1.1",
                            "udp_port": meter_port,
                        },
                    )
                ).json()
                await ops.patch(
                    "/api/v1/settings/default", json={"values": {"poll": {"instant_interval_s": 1}}}
                )

                agent = GatewayAgent(
                    identity, AgentOptions(queue_path=tmp_path / "q.db"), clock=clock
                )
                running = asyncio.create_task(agent.run_forever())
                try:

                    def count(table):
                        with engine.connect() as conn:
                            return len(conn.execute(select(table)).all())

                    await eventually(lambda: count(s.readings_fixed) >= 2, timeout_s=30)
                    await eventually(lambda: count(s.readings_instant) >= 5, timeout_s=30)
                    state = (await ops.get(f"/api/v1/gateways/{gateway['id']}")).json()
                    assert state["state"] == "working"

                    # Every 30-minute value stored equals the meter's own register.
                    regs = fleet.meters[0].registers
                    with engine.connect() as conn:
                        for row in conn.execute(select(s.readings_fixed)):
                            at = row.slot_start.astimezone(JST)
                            assert row.raw == regs.raw(at)[row.direction], at
                            assert row.meter_id == meter["id"]

                    # A settings change reaches the running gateway in seconds.
                    changed = (
                        await ops.patch(
                            f"/api/v1/gateways/{gateway['id']}/settings",
                            json={"values": {"poll": {"instant_interval_s": 2}}},
                        )
                    ).json()

                    async def applied():
                        g = (await ops.get(f"/api/v1/gateways/{gateway['id']}")).json()
                        return g["settings_version_applied"] == changed["version"]

                    for _ in range(100):
                        if await applied():
                            break
                        await asyncio.sleep(0.1)
                    else:
                        with engine.connect() as conn:
                            row = conn.execute(select(s.gateways)).one()
                            qs = conn.execute(select(s.quarantine)).all()
                        raise AssertionError(
                            f"settings not applied within 10 s: {row} "
                            f"{app.state.device_service.counters} {qs}"
                        )
                    assert agent.meter.poller.policy.instant_interval_s == 2

                    # A command: read E7 now.
                    command = (
                        await ops.post(
                            f"/api/v1/gateways/{gateway['id']}/commands",
                            json={"name": "read_property", "args": {"epc": "0xE7"}},
                        )
                    ).json()
                    for _ in range(300):  # up to 30 s: a busy machine (xdist) needs more than 10
                        done = (await ops.get(f"/api/v1/commands/{command['id']}")).json()
                        if done["state"] in ("done", "failed"):
                            break
                        await asyncio.sleep(0.1)
                    assert done["state"] == "done", done
                    assert isinstance(done["result"]["value"], int)
                finally:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running

    run(scenario(), timeout_s=120)
