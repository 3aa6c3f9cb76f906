"""Issue 19's first "Done when", end to end over real sockets and real processes.

Three versions of the agent are built from the working tree (the gateway's files copied to
a temporary directory, `__version__` bumped; the third exits at start), published with
`kenshin release`, and served by the real server. A gateway runs the first from its own
install root under `kenshin gateway supervise`, as systemd would run it. An operator sends
`update` through the command API: the gateway downloads the second (a delta), reports it,
and is switched; the supervisor is SIGKILLed while the switch is under way and started
again, and the gateway still ends on the second version, reading. Then `update` to the
broken third: the watchdog rolls back to the second by itself, and the server hears
`rolled_back` with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import kenshin
from kenshin.cli import app as cli
from kenshin.cli.ports import free_tcp_port
from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.gateway.supervisor import PID, process_alive
from kenshin.gateway.updater import REQUEST
from kenshin.server import schema as s
from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
from kenshin.server.settings import Settings
from kenshin.sim.clock import JST, ScaledClock
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig
from kenshin.updates.archive import agent_files, build_archive
from kenshin.updates.install import Installer
from kenshin.updates.states import UPDATE_EVENT, update_args
from tests.gateway.conftest import install
from tests.gateway.test_end_to_end import ADMIN, OPERATOR, PASSWORD, login
from tests.gateway.test_loss_free import start_server, stop_server
from tests.gateway.test_security import _csv
from tests.support import free_udp_port, run

pytestmark = pytest.mark.slow  # three processes' lives, a server and a meter

V1, V2, V3 = "9.0.1", "9.0.2", "9.0.3"
SOURCE = Path(kenshin.__file__).parent
BROKEN = 'raise SystemExit("9.0.3 is broken on purpose")\n'


def build(tmp: Path, version: str, *, broken: bool = False) -> Path:
    """The release archive of the working tree's agent as `version`."""
    tree = tmp / f"tree-{version}" / "kenshin"
    for name, data in agent_files(SOURCE).items():
        path = tree.parent / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    init = tree / "__init__.py"
    old = f'__version__ = "{kenshin.__version__}"'
    assert old in init.read_text()
    init.write_text(init.read_text().replace(old, f'__version__ = "{version}"'))
    if broken:  # fails its health check: exits before it ever connects
        main = tree / "gateway" / "main.py"
        start = "    args = parser.parse_args(argv)\n"
        assert start in main.read_text()
        main.write_text(main.read_text().replace(start, f"{start}    {BROKEN}"))
    archive = tmp / f"kenshin-gateway-{version}.tar"
    archive.write_bytes(build_archive(agent_files(tree)))
    return archive


def release(repo: Path, keys: Path, *args: str) -> None:
    flags = ["--repo", str(repo), "--offline-keys", str(keys / "offline")]
    flags += ["--online-keys", str(keys / "online")]
    if args[0] == "init":
        flags += ["--recipe-keys", str(keys / "recipes")]
    result = CliRunner().invoke(cli, ["release", *args, *flags])
    assert result.exit_code == 0, result.output


async def until(check: Callable[[], Awaitable[object]], timeout_s: float, what: str) -> object:
    """`check()`'s first truthy answer, polled; fails saying `what` was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        if answer := await check():
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


def test_a_gateway_updates_itself_and_rolls_a_broken_version_back(tmp_path: Path):
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    release(repo, keys, "init")
    archives = {v: build(tmp_path, v, broken=v == V3) for v in (V1, V2, V3)}
    for version, archive in archives.items():
        release(repo, keys, "add", str(archive), "--version", version)
    release(repo, keys, "delta", V2)
    release(repo, keys, "delta", V3)

    # The gateway as the factory delivers it: an identity, the first root, V1 installed.
    gw = tmp_path / "gw"
    root, state = gw / "opt", gw / "var"
    state.mkdir(parents=True)
    shutil.copy(repo / "metadata" / "1.root.json", state / "initial-root.json")
    result = CliRunner().invoke(
        cli, ["gateway", "install", str(archives[V1]), "--version", V1, "--root", str(root)]
    )
    assert result.exit_code == 0, result.output
    installer = Installer(root)
    log = (tmp_path / "gateway.log").open("w")

    def supervise() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "kenshin", "gateway", "supervise", "--root", str(root),
             "--identity", str(gw / "identity.json"), "--queue", str(state / "queue.db"),
             "--state-dir", str(state), "--deadline-s", "40", "--crash-limit", "3"],
            cwd=gw, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    async def scenario():
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'server.db'}",
            port=free_tcp_port(),
            broker="embedded",
            mqtt_port=0,
            secret_key_file=tmp_path / "secret.key",
            updates_dir=repo,
            rollouts_every_s=0.5,
        )
        app, web, serving = await start_server(settings)
        base = f"http://127.0.0.1:{settings.port}"
        engine = app.state.engine
        ensure_admin(engine, ADMIN, PASSWORD)
        create_user(engine, create_tenant(engine, "Denryoku", "retailer"), OPERATOR, PASSWORD,
                    role="operator")  # fmt: skip
        identity, code = Identity.generate("GW-UPD", base), new_claim_code()
        identity.save(gw / "identity.json")
        meter_port = free_udp_port("127.0.0.1")
        clock = ScaledClock(datetime.now(JST), speed=1.0)
        fleet = SimFleet(1, clock, base_host="127.0.0.1", port=meter_port, multicast=False,
                         config=MeterConfig(seed=7, pv=True))  # fmt: skip
        supervisor = None
        async with fleet, httpx.AsyncClient(base_url=base) as ops:
            async with httpx.AsyncClient(base_url=base) as admin:
                await login(admin, ADMIN)
                answer = await admin.post("/api/v1/gateways/import", content=_csv((identity, code)),
                                          headers={"content-type": "text/csv"})  # fmt: skip
                assert answer.status_code == 200, answer.text
            await login(ops, OPERATOR)
            _, gateway, answer = await install(
                ops, code, "pss00000001",
                {"link": "udp", "udp_host": "127.0.0.1", "udp_port": meter_port},
            )  # fmt: skip
            assert answer.status_code == 201, answer.text
            answer = await ops.patch(
                "/api/v1/settings/default",
                json={"values": {"poll": {"instant_interval_s": 1}, "uplink": {"max_delay_s": 1}}},
            )
            assert answer.status_code == 200, answer.text
            gid = gateway["id"]

            async def version():
                report = (await ops.get(f"/api/v1/gateways/{gid}/status")).json()["report"]
                return report and report["agent_version"]

            async def update_events() -> list[dict]:
                page = (await ops.get("/api/v1/events", params={"gateway_id": gid})).json()
                return [e["detail"] for e in page["items"] if e["code"] == f"gw_{UPDATE_EVENT}"]

            def readings() -> int:
                with engine.connect() as conn:
                    return conn.execute(
                        select(func.count()).select_from(s.readings_instant)
                    ).scalar()

            async def readings_grow(by: int, timeout_s: float) -> None:
                start = readings()
                await until(lambda: _value(readings() >= start + by), timeout_s, "new readings")

            async def command(args: dict) -> dict:
                answer = await ops.post(f"/api/v1/gateways/{gid}/commands",
                                        json={"name": "update", "args": args})  # fmt: skip
                assert answer.status_code == 201, answer.text
                url = f"/api/v1/commands/{answer.json()['id']}"

                async def finished():
                    done = (await ops.get(url)).json()
                    return done if done["state"] in ("done", "failed", "expired") else None

                return await until(finished, 30, "the command's result")

            try:
                supervisor = supervise()
                await until(lambda: _value(version()), 30, "a first status")
                assert await version() == V1
                await readings_grow(3, 30)

                # An unknown version is refused at once; the running one is a no-op.
                refused = await command(update_args("9.9.9"))
                assert refused["state"] == "failed" and "not" in refused["error"], refused
                already = await command(update_args(V1))
                assert already["result"] == {"already": V1}, already

                # V2, rolled out (one stage: this gateway): the rollouts job sends the
                # command, the gateway downloads a delta; SIGKILL the supervisor mid-switch.
                made = await ops.post("/api/v1/rollouts", json={
                    "version": V2, "gateway_ids": [gid], "stages": [100], "window_s": 1,
                    "soak_s": 0})  # fmt: skip
                assert made.status_code == 201, made.text
                rollout = f"/api/v1/rollouts/{made.json()['id']}"
                old_agent = int((root / PID).read_text())
                await until(
                    lambda: _value((root / REQUEST).exists() or installer.current_version() == V2),
                    60, "the switch to V2 asked for",
                )  # fmt: skip
                supervisor.send_signal(signal.SIGKILL)
                supervisor.wait()
                supervisor = supervise()
                await until(
                    lambda: _value(not process_alive(old_agent)), 30, "the orphaned V1 stopped"
                )

                async def healthy(v: str):
                    return any(e["state"] == "healthy" and e["version"] == v
                               for e in await update_events())  # fmt: skip

                await until(lambda: healthy(V2), 60, "V2 reported healthy")
                assert await version() == V2

                async def rollout_done():
                    return (await ops.get(rollout)).json()["state"] == "done"

                await until(rollout_done, 30, "the rollout done")
                states = [e["state"] for e in await update_events() if e["version"] == V2]
                assert {"downloading", "installed"} <= set(states), states
                installed = next(e for e in await update_events() if e["state"] == "installed")
                assert installed["reason"] == f"delta from {V1}" and installed["from_version"] == V1
                await readings_grow(3, 30)  # V2 reads and sends

                async def integrity_of(v: str):  # checked at start: V2's files are whole
                    page = (await ops.get("/api/v1/events", params={"gateway_id": gid})).json()
                    return next((e for e in page["items"] if e["code"] == "gw_integrity"
                                 and e["detail"]["version"] == v), None)  # fmt: skip

                checked = await until(lambda: integrity_of(V2), 30, "V2's integrity reported")
                assert checked["detail"]["ok"] is True and checked["severity"] == "info", checked
                assert (installer.current_version(), installer.previous_version()) == (V2, V1)
                assert sorted(p.name for p in (root / "archives").iterdir()) == [
                    f"{V1}.tar",
                    f"{V2}.tar",
                ]

                # V3 dies at start: rolled back to V2 with no server action.
                assert (await command(update_args(V3)))["result"] == {"accepted": V3}

                async def rolled_back():
                    return next((e for e in await update_events()
                                 if e["state"] == "rolled_back"), None)  # fmt: skip

                event = await until(rolled_back, 60, "rolled_back reported")
                assert event["version"] == V3 and event["from_version"] == V2, event
                assert "exited 3 times in a row" in event["reason"], event
                assert installer.current_version() == V2
                await until(lambda: _value(version()), 10, "a status")
                await readings_grow(2, 30)
                assert await version() == V2
                assert installer.installed() == [V2]
            finally:
                if supervisor is not None:
                    supervisor.terminate()
                    await asyncio.to_thread(supervisor.wait, 30)
                await stop_server(web, serving)

    try:
        run(scenario(), timeout_s=240)
    finally:
        log.close()
        if os.environ.get("KENSHIN_E2E_LOG"):
            print((tmp_path / "gateway.log").read_text())


async def _value(value):
    """A plain value (or a coroutine's) for `until`."""
    return await value if asyncio.iscoroutine(value) else value
