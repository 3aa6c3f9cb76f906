"""The whole platform in one process, with no hardware: what `kenshin demo` runs.

The server (HTTP, the embedded MQTT broker, SQLite), a demo tenant with an operator, and a
handful of simulated homes: each a simulated smart meter and a gateway agent that knows
only its identity file. Some meters are reached over ECHONET Lite/UDP on 127.0.1.x, some
behind emulated Wi-SUN dongles on pseudo-terminals (BP35A1 and BP35C2 dialects). The
gateways are made as a factory would, imported, claimed through the API with their
printed codes, and from then on everything flows as in production.

A run that finishes setting up leaves `demo.json` in its folder (the logins' password, the
gateways' keys, the moment the meters' registers are anchored to): a later run in the
same folder starts the same homes again on the same database, so it shows the same data
and more. `fresh=True`, or a folder whose set-up was cut short, starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import func, select

from kenshin import demofaults
from kenshin.demoplan import history_days, plan_and_forecast
from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.jst import JST
from kenshin.ports import free_udp_port, tcp_port_or_free
from kenshin.server import schema as s
from kenshin.server.app import create_app
from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
from kenshin.server.settings import Settings
from kenshin.sim.clock import ScaledClock
from kenshin.sim.dongle import DongleEmulator, DongleModel
from kenshin.sim.fleet import SimFleet
from kenshin.sim.load import weather_csv
from kenshin.sim.meter import MeterConfig, SimulatedMeter
from kenshin.wire.enrollment import b64decode, b64encode

ADMIN_EMAIL = "admin@demo.kenshin.local"
OPERATOR_EMAIL = "operator@demo.kenshin.local"  # the retailer's operator
SOLAR_EMAIL = "solar@demo.kenshin.local"  # the generator's operator
RETAIL_ADMIN_EMAIL = "retail-admin@demo.kenshin.local"  # each tenant's administrator
SOLAR_ADMIN_EMAIL = "solar-admin@demo.kenshin.local"
HISTORY_DAYS = 31  # each gateway backfills this much from its meter's memory at first start
# Simulated B-route credentials (the emulated dongles' meters accept exactly these).
DEMO_BROUTE_ID = "00000000000000000000000000C0FFEE"
DEMO_BROUTE_PASSWORD = "KENSHINDEMO1"
PLAN_WAIT_S = 600.0  # for the backfill, before the plan is made from what is there
STOP_S = 10.0  # what stopping waits for each part at most
STATE_FILE = "demo.json"
# What the demo writes in its folder: all that a fresh start removes (nothing else is).
DEMO_FILES = ("kenshin.db*", "secret.key", "weather.csv", "*.queue.db*", "ttyWISUN*", STATE_FILE)


@dataclass
class DemoState:
    """What a second run needs to be the first one again."""

    password: str
    anchor: datetime  # the meters' registers read their initial values at this moment
    keys: dict[str, str]  # gateway serial -> private key (base64)

    @classmethod
    def load(cls, path: Path) -> DemoState:
        data = json.loads(path.read_text("utf-8"))
        return cls(data["password"], datetime.fromisoformat(data["anchor"]), data["keys"])

    def save(self, path: Path) -> None:
        body = {"password": self.password, "anchor": self.anchor.isoformat(), "keys": self.keys}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a password
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(body, file, indent=2)


@dataclass
class Home:
    name: str
    link: str  # udp | wisun
    identity: Identity
    claim_code: str
    meter: SimulatedMeter
    udp: tuple[str, int] | None = None
    dongle: DongleEmulator | None = None
    tenant: str = "retail"  # retail | solar


@dataclass
class Demo:
    workdir: Path
    homes_udp: int = 2
    homes_wisun: int = 2
    homes_solar: int = 2
    http_port: int = 8080
    fresh: bool = False  # start over even where a finished set-up is found
    password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    echo: Callable[[str], None] = print
    homes: list[Home] = field(default_factory=list)
    agents: list[GatewayAgent] = field(default_factory=list)
    state: DemoState | None = None  # a finished set-up found in the folder

    def _prepare(self) -> None:
        """Take up the folder's finished set-up, or clear what the demo left there."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        state_file = self.workdir / STATE_FILE
        if state_file.exists() and not self.fresh:
            self.state = DemoState.load(state_file)
            self.password = self.state.password
            self.echo(f"Kenshin demo: starting again with the data in {self.workdir}")
            return
        left = [p for pattern in DEMO_FILES for p in self.workdir.glob(pattern)]
        if left and not self.fresh:
            self.echo(f"Kenshin demo: the set-up in {self.workdir} was not finished")
        self.echo(f"Kenshin demo: starting fresh in {self.workdir}")
        for path in left:
            path.unlink()

    async def run(self, seconds: float | None = None, report_every_s: float = 10.0) -> None:
        self._prepare()
        anchor = self.state.anchor if self.state else datetime.now(JST).replace(microsecond=0)
        port = tcp_port_or_free("127.0.0.1", self.http_port)
        weather = self.workdir / "weather.csv"  # the offline provider beside the plants
        first_day = datetime.now(JST).date() - timedelta(days=HISTORY_DAYS + 1)
        weather.write_text(weather_csv(first_day, HISTORY_DAYS + 4), encoding="utf-8")
        settings = Settings(
            database_url=f"sqlite:///{self.workdir / 'kenshin.db'}",
            port=port,
            mqtt_port=0,
            secret_key_file=self.workdir / "secret.key",
            heartbeat_s=60.0,
            log_level="warning",
            forecast_every_s=120.0,  # panels fill soon after the backfill arrives
            alerts_every_s=120.0,
            webhooks_allow_private=True,  # a receiver on this machine or its network
            weather_csv=weather,
        )
        app = create_app(settings)
        web = _QuietServer(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        serving = asyncio.create_task(web.serve())
        try:
            while not web.started:
                if serving.done():
                    serving.result()  # raises what stopped it
                await asyncio.sleep(0.05)
            await self._run_homes(app, f"http://127.0.0.1:{port}", anchor, seconds, report_every_s)
        finally:
            # Stopping: the broker's complaints about clients that went first are no news.
            logging.disable(logging.ERROR)
            web.should_exit = True
            await _within(STOP_S, serving)

    async def _run_homes(
        self, app, base: str, anchor: datetime, seconds: float | None, report_every_s: float
    ) -> None:
        clock = ScaledClock()  # real time: the demo is for watching
        config = MeterConfig(anchor=anchor)  # the same registers as every earlier run
        udp_port = free_udp_port("127.0.1.1")
        fleet = SimFleet(
            self.homes_udp, clock, port=udp_port, multicast=False, seed=101, config=config
        )
        solar = SimFleet(
            self.homes_solar,
            clock,
            base_host="127.0.1.51",
            port=free_udp_port("127.0.1.51"),
            multicast=False,
            seed=301,
            pv=True,
            config=config,
        )
        tasks: list[asyncio.Task] = []
        async with fleet, solar, contextlib.AsyncExitStack() as stack:
            self._make_homes(base, fleet, clock, anchor)
            self._make_solar_homes(base, solar)
            demofaults.inject(self.homes, anchor)  # a month with a few faults in it
            for home in self.homes:
                if home.dongle is not None:
                    await stack.enter_async_context(home.dongle)
            if self.state is None:
                await self._register(app, base)
                keys = {h.identity.serial: b64encode(h.identity.private_key) for h in self.homes}
                DemoState(self.password, anchor, keys).save(self.workdir / STATE_FILE)
            else:
                self._move_meters(app)
            tasks = [asyncio.create_task(self._agent(home, clock)) for home in self.homes]
            tasks.append(asyncio.create_task(self._plan(app, anchor)))
            broker = app.state.device_service.endpoint
            self.echo(
                f"\nKenshin demo is running: the platform in one process, nothing but simulators.\n"
                f"  control panel: {base}/   (日本語 / English)\n"
                f"  web API:      {base}/api/v1/docs   (health: {base}/readyz)\n"
                f"  log in:       {OPERATOR_EMAIL} / {self.password}   (a retailer's operator)\n"
                f"                {RETAIL_ADMIN_EMAIL} (its administrator), {SOLAR_EMAIL} and "
                f"{SOLAR_ADMIN_EMAIL} (a PV generator's),\n"
                f"                {ADMIN_EMAIL} (platform admin: the API only): same password\n"
                f"  MQTT broker:  embedded, 127.0.0.1:{broker.port}\n"
                f"  homes:        {self.homes_udp} on ECHONET Lite/UDP, {self.homes_wisun} behind "
                f"emulated Wi-SUN dongles, {self.homes_solar} PV plants; each gateway backfills "
                f"{HISTORY_DAYS} days of history at first start\n"
                f"  data:         {self.workdir}\n"
                "Simulators only: never connect uncertified devices to a real smart meter.\n"
                "Press Ctrl-C to stop.\n"
            )
            try:
                loop = asyncio.get_running_loop()
                deadline = None if seconds is None else loop.time() + seconds
                while deadline is None or loop.time() < deadline:
                    wait = (
                        report_every_s
                        if deadline is None
                        else min(report_every_s, max(0.0, deadline - loop.time()))
                    )
                    await asyncio.sleep(wait)
                    self.echo(self.report(app))
            finally:
                logging.disable(logging.ERROR)
                for task in tasks:
                    task.cancel()
                await _within(STOP_S, *tasks)
                for agent in self.agents:
                    agent.queue.close()

    async def _plan(self, app, anchor: datetime) -> None:
        """Once the retailer's month of history is in (the backfill), its past days'
        forecasts and a plan that follows them (kenshin.demoplan), and the alerts and
        events of the month's faults not on record yet (kenshin.demofaults)."""
        engine = app.state.engine
        with engine.connect() as conn:
            tenant_id = conn.execute(
                select(s.tenants.c.id).where(s.tenants.c.kind == "retailer")
            ).scalar_one()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PLAN_WAIT_S
        today = datetime.now(JST).date()
        while loop.time() < deadline:
            done = await asyncio.to_thread(history_days, engine, tenant_id, today, HISTORY_DAYS)
            if done >= HISTORY_DAYS - 2:  # the first day's slots start mid-day
                break
            await asyncio.sleep(5)
        now = datetime.now(JST)
        days = await asyncio.to_thread(plan_and_forecast, engine, tenant_id, now, HISTORY_DAYS)
        self.echo(f"procurement plan: {days} days, following the forecast (a few deviations)")
        alerts = await asyncio.to_thread(
            demofaults.record, engine, self.homes, anchor, HISTORY_DAYS
        )
        if alerts:
            self.echo(f"faults of the month: {alerts} alerts and a gateway outage on record")

    def _identity(self, serial: str, base: str) -> Identity:
        """The gateway's identity: made now, or the one an earlier run registered."""
        if self.state is None:
            return Identity.generate(serial, base)
        return Identity(serial, b64decode(self.state.keys[serial]), base, "kenshin-gw")

    def _move_meters(self, app) -> None:
        """An earlier run's UDP meters listen on new ports now: the server's meter records
        follow them (their gateways read the settings afresh when they connect)."""
        g, m = s.gateways.c, s.meters.c
        with app.state.engine.begin() as conn:
            for home in self.homes:
                if home.udp is None:
                    continue
                gateway = select(g.id).where(g.serial == home.identity.serial).scalar_subquery()
                conn.execute(
                    s.meters.update()
                    .where(m.gateway_id == gateway)
                    .values(udp_host=home.udp[0], udp_port=home.udp[1])
                )

    def _make_homes(self, base: str, fleet: SimFleet, clock, anchor: datetime) -> None:
        for i, (meter, (host, port)) in enumerate(zip(fleet.meters, fleet.addresses, strict=True)):
            self.homes.append(
                Home(
                    f"home-{i + 1}",
                    "udp",
                    self._identity(f"DEMO-GW{i + 1:03d}", base),
                    new_claim_code(),
                    meter,
                    udp=(host, port),
                )
            )
        models = [DongleModel.BP35A1, DongleModel.BP35C2]
        for j in range(self.homes_wisun):
            n = self.homes_udp + j + 1
            meter = SimulatedMeter(clock, MeterConfig(seed=200 + j, pv=j % 2 == 0, anchor=anchor))
            dongle = DongleEmulator(
                meter,
                model=models[j % 2],
                route_b_id=DEMO_BROUTE_ID,
                password=DEMO_BROUTE_PASSWORD,
                seed=n,
                link=self.workdir / f"ttyWISUN{j}",
            )
            self.homes.append(
                Home(
                    f"home-{n}",
                    "wisun",
                    self._identity(f"DEMO-GW{n:03d}", base),
                    new_claim_code(),
                    meter,
                    dongle=dongle,
                )
            )

    def _make_solar_homes(self, base: str, fleet: SimFleet) -> None:
        for i, (meter, address) in enumerate(zip(fleet.meters, fleet.addresses, strict=True)):
            n = len(self.homes) + 1
            self.homes.append(
                Home(
                    f"plant-{i + 1}",
                    "udp",
                    self._identity(f"DEMO-GW{n:03d}", base),
                    new_claim_code(),
                    meter,
                    udp=address,
                    tenant="solar",
                )
            )

    async def _register(self, app, base: str) -> None:
        engine = app.state.engine
        ensure_admin(engine, ADMIN_EMAIL, self.password)
        for name, kind, operator, admin in (
            ("デモ電力 Demo Power", "retailer", OPERATOR_EMAIL, RETAIL_ADMIN_EMAIL),
            ("デモ発電 Demo Solar", "generator", SOLAR_EMAIL, SOLAR_ADMIN_EMAIL),
        ):
            tenant = create_tenant(engine, name, kind)
            create_user(engine, tenant, operator, self.password, role="operator")
            # A tenant's administrator: the panel's pages (and the tenant's users, keys
            # and webhooks through the API), where the platform admin has only the API.
            create_user(engine, tenant, admin, self.password, role="admin")
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["serial", "model", "public_key", "claim_code"])
        for home in self.homes:
            writer.writerow(
                [
                    home.identity.serial,
                    "kenshin-demo",
                    b64encode(home.identity.public_key),
                    home.claim_code,
                ]
            )
        async with httpx.AsyncClient(base_url=base, timeout=30) as admin:
            await _login(admin, ADMIN_EMAIL, self.password)
            await admin.post(
                "/api/v1/gateways/import",
                content=rows.getvalue(),
                headers={"content-type": "text/csv"},
            )
            await admin.post("/api/v1/notices", json=_demo_notice())
        for tenant, email in (("retail", OPERATOR_EMAIL), ("solar", SOLAR_EMAIL)):
            async with httpx.AsyncClient(base_url=base, timeout=30) as ops:
                await _login(ops, email, self.password)
                await self._set_up_tenant(ops, [h for h in self.homes if h.tenant == tenant])

    async def _set_up_tenant(self, ops: httpx.AsyncClient, homes: list[Home]) -> None:
        """As the tenant's operator: settings, a site, gateway and meter per home, and what
        the panels compare with (the retailer's procured plan, the plants' sale prices)."""
        await ops.patch(
            "/api/v1/settings/default",
            json={
                "values": {
                    "poll": {"instant_interval_s": 10, "initial_backfill_days": HISTORY_DAYS},
                    "uplink": {"max_delay_s": 15},
                    "heartbeat_s": 60,
                }
            },
        )
        meter_ids = []
        for home in homes:
            n = self.homes.index(home) + 1
            site = (
                await ops.post(
                    "/api/v1/sites",
                    json={
                        "customer_id": f"DEMO-{n:04d}",
                        "service_code": f"pss{n:08d}",
                        "address": f"東京都千代田区デモ町{n}-1",
                        "phone": f"03-0000-{n:04d}",
                        "name": home.name,
                    },
                )
            ).json()
            gateway = (
                await ops.post(
                    "/api/v1/gateways/claim",
                    json={"claim_code": home.claim_code, "site_id": site["id"]},
                )
            ).json()
            meter = {"site_id": site["id"], "gateway_id": gateway["id"], "link": home.link}
            if home.udp is not None:
                meter |= {"udp_host": home.udp[0], "udp_port": home.udp[1]}
            else:
                meter |= {
                    "device": str(home.dongle.link),
                    "broute_id": DEMO_BROUTE_ID,
                    "broute_password": DEMO_BROUTE_PASSWORD,
                }
            answer = await ops.post("/api/v1/meters", json=meter)
            answer.raise_for_status()
            meter_ids.append(answer.json()["id"])
        if homes and homes[0].tenant == "solar":
            for meter_id in meter_ids:  # a feed-in price, as under a FIT contract
                await ops.post(
                    f"/api/v1/meters/{meter_id}/prices",
                    json={"yen_per_kwh": 16.0, "valid_from": "2020-01-01"},
                )
        # The retailer's plan follows its forecast: made once the history is in (_plan).

    async def _agent(self, home: Home, clock) -> None:
        agent = GatewayAgent(
            home.identity,
            AgentOptions(queue_path=self.workdir / f"{home.identity.serial}.queue.db"),
            clock=clock,
        )
        self.agents.append(agent)
        await agent.run_forever()

    def report(self, app) -> str:
        with app.state.engine.connect() as conn:
            states = dict(
                conn.execute(
                    select(s.gateways.c.state, func.count()).group_by(s.gateways.c.state)
                ).all()
            )
            instant = conn.execute(select(func.count()).select_from(s.readings_instant)).scalar()
            fixed = conn.execute(select(func.count()).select_from(s.readings_fixed)).scalar()
            latest = conn.execute(
                select(s.readings_instant.c.meter_id, s.readings_instant.c.power_w)
                .order_by(s.readings_instant.c.at.desc())
                .limit(40)
            ).all()
        power: dict[int, int] = {}
        for meter_id, watts in latest:
            power.setdefault(meter_id, watts)
        shown = "  ".join(f"m{m}: {w} W" for m, w in sorted(power.items()))
        state_text = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
        return (
            f"gateways: {state_text} | readings: {instant} instant, {fixed} half-hour | "
            f"{shown or 'waiting for the first readings'}"
        )


async def _within(seconds: float, *tasks: asyncio.Task) -> None:
    """Wait for `tasks` to end, at most `seconds`: a demo that is asked to stop stops,
    even if a part of it does not (what is left is cancelled as the loop closes)."""
    if tasks:
        await asyncio.wait(tasks, timeout=seconds)


class _QuietServer(uvicorn.Server):
    """uvicorn, minus its own Ctrl-C handling: the demo stops its gateways first, then the
    server, so nothing complains about a broker that went away."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def _demo_notice() -> dict:
    """A maintenance window announced to every tenant: next Sunday 02:00-03:00 JST."""
    today = datetime.now(JST).date()
    sunday = today + timedelta(days=(6 - today.weekday()) % 7 or 7)
    start = datetime.combine(sunday, time(2), JST)
    return {
        "kind": "maintenance",
        "title": "定期メンテナンス / Scheduled maintenance",
        "body": "この間、画面と API は数分ずつ止まることがあります。計測値は失われません。\n"
        "The panel and the API may pause for a few minutes; no reading is lost.",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "every_tenant": True,
    }


async def _login(client: httpx.AsyncClient, email: str, password: str) -> None:
    answer = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    answer.raise_for_status()
    client.headers["X-CSRF-Token"] = answer.headers["X-CSRF-Token"]  # for its writes
