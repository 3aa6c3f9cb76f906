"""Issue 19 point 5 end to end, over real sockets in one process: the shipped PV recipe is
signed by the recipes key into the server's update repository, an operator enables it for
one gateway through the settings API, the agent (knowing only its identity file and its
first TUF root) fetches and verifies it, the recipe reads the PV simulator over ECHONET
Lite UDP on 127.0.0.x, and its readings come back through the API as the gateway's own
series ``pv``; the other tenant's operator gets a 404 for that gateway's series."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import shutil
from datetime import datetime, timedelta

import httpx
import pytest
import uvicorn

from kenshin.cli.ports import free_tcp_port
from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.gateway.updater import UpdateSetup
from kenshin.server.app import create_app
from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
from kenshin.server.settings import Settings
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.pv import PvEndpoint, SimulatedPv
from kenshin.updates.keys import KeyDirs
from kenshin.updates.repository import Repository
from kenshin.wire.enrollment import b64encode
from tests.support import eventually, free_udp_port, run

from .test_recipes_attacks import shipped

pytestmark = pytest.mark.slow  # the whole stack

ADMIN, PASSWORD = "root@example.jp", "correct horse battery"
PV_HOST = "127.0.0.12"
NOON = datetime(2026, 7, 1, 12, 0, tzinfo=JST)


async def login(base: str, email: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base)
    answer = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.headers["X-CSRF-Token"]
    return client


def test_a_signed_recipe_enabled_by_settings_reads_the_pv_and_its_series_reaches_the_api(
    tmp_path,
):
    keys = KeyDirs(tmp_path / "offline", tmp_path / "online", tmp_path / "recipe-keys")
    repo = Repository.init(tmp_path / "repo", keys)
    package = tmp_path / "pv-inverter.recipe"
    package.write_bytes(shipped())
    repo.add_recipe(package, "pv-inverter")  # the author's step, with the recipes key

    port = free_tcp_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'kenshin.db'}",
        port=port,
        broker="embedded",
        secret_key_file=tmp_path / "secret.key",
        mqtt_port=0,
        updates_dir=repo.path,
    )
    base = f"http://127.0.0.1:{port}"

    async def scenario():
        app = create_app(settings)
        web = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        serving = asyncio.create_task(web.serve())
        pv_port = free_udp_port(PV_HOST)
        pv = PvEndpoint(SimulatedPv(ManualClock(NOON)), host=PV_HOST, port=pv_port)
        await pv.start(announce=False)
        running = None
        try:
            await eventually(lambda: web.started, timeout_s=20)
            engine = app.state.engine
            ensure_admin(engine, ADMIN, PASSWORD)
            for name in ("A", "B"):
                tenant = create_tenant(engine, f"Denryoku {name}", "retailer")
                create_user(engine, tenant, f"ops@{name.lower()}.jp", PASSWORD, role="operator")

            identity = Identity.generate("GW-PV1", base)
            code = new_claim_code()
            rows = io.StringIO()
            csv.writer(rows).writerows(
                [
                    ["serial", "model", "public_key", "claim_code"],
                    ["GW-PV1", "kenshin-gw", b64encode(identity.public_key), code],
                ]
            )
            async with contextlib.AsyncExitStack() as stack:
                root = stack.push_async_callback  # closes the clients at the end
                admin = await login(base, ADMIN)
                root(admin.aclose)
                answer = await admin.post(
                    "/api/v1/gateways/import",
                    content=rows.getvalue(),
                    headers={"content-type": "text/csv"},
                )
                assert answer.json()["added"] == 1, answer.text
                ops, other = await login(base, "ops@a.jp"), await login(base, "ops@b.jp")
                root(ops.aclose)
                root(other.aclose)
                site = await ops.post(
                    "/api/v1/sites",
                    json={"customer_id": "C-PV", "service_code": "pss00000009", "address": "x"},
                )
                claimed = await ops.post(
                    "/api/v1/gateways/claim",
                    json={"claim_code": code, "site_id": site.json()["id"]},
                )
                gateway_id = claimed.json()["id"]
                options = {"host": PV_HOST, "port": pv_port, "interval_s": 1}
                answer = await ops.patch(
                    f"/api/v1/gateways/{gateway_id}/settings",
                    json={"values": {"recipes": {"pv-inverter": options}}},
                )
                assert answer.status_code == 200, answer.text

                # The gateway as installed for updates: its first root, its state.
                state, install = tmp_path / "gw-state", tmp_path / "gw-install"
                state.mkdir()
                install.mkdir()
                shutil.copy(repo.metadata_dir / "1.root.json", state / "initial-root.json")
                setup = UpdateSetup(install, state, state / "initial-root.json", f"{base}/updates")
                agent = GatewayAgent(
                    identity, AgentOptions(queue_path=tmp_path / "q.db", updates=setup)
                )
                running = asyncio.create_task(agent.run_forever())

                url = f"/api/v1/gateways/{gateway_id}/series/pv"
                today = datetime.now(JST).replace(tzinfo=None)
                window = {
                    "start": (today - timedelta(days=1)).isoformat(timespec="seconds"),
                    "end": (today + timedelta(days=1)).isoformat(timespec="seconds"),
                }
                got: list = []

                async def arrived() -> bool:
                    answer = await ops.get(url, params=window)
                    assert answer.status_code == 200, answer.text
                    got[:] = answer.json()["samples"]
                    return len(got) >= 2

                await eventually_async(arrived, timeout_s=40)
                first = got[0]
                assert first["recipe"] == "pv-inverter"
                assert first["values"] == {"generation_w": 4000, "cumulative_wh": 1_234_000}
                assert agent.recipes.summary() == {"running": {"pv-inverter": "0.1"}, "refused": {}}
                # The other tenant cannot see the gateway, nor its series.
                assert (await other.get(url, params=window)).status_code == 404
                # Readings are a series, not events.
                events = (await ops.get("/api/v1/events")).json()
                codes = {e["code"] for e in events.get("items", [])}
                assert "gw_recipe_readings" not in codes
        finally:
            if running is not None:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            pv.close()
            web.should_exit = True
            await serving

    run(scenario(), timeout_s=120)


async def eventually_async(condition, timeout_s: float) -> None:
    """`eventually` for a condition that must itself await (an HTTP call)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.2)
