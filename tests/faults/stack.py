"""The whole platform as an operator runs it, in processes a test can kill: the server
(`tests.faults.server_runner`, i.e. `kenshin server run` with its jobs on the simulated
clock) with its managed Mosquitto or embedded broker, PostgreSQL, gateway agents in their
own processes, and simulated smart meters on real UDP, all on one compressed clock.

`FaultStack.complete_through(end)` waits until every half hour from the first value to
`end` is stored, and `check_against_registers` compares each with the simulator's
register: the yardstick of every fault test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.ports import free_tcp_port
from kenshin.server import schema as s
from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
from kenshin.server.db import make_engine
from kenshin.sim.clock import JST, ScaledClock
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig
from tests.gateway.conftest import install
from tests.gateway.test_security import _csv
from tests.support import free_udp_port

SPEED = 360.0  # six simulated minutes a real second
START = datetime(2026, 8, 10, 6, 0, tzinfo=JST)
SLOT_S = 1800
ROOT = Path(__file__).parents[2]
ADMIN, PASSWORD = "root@example.jp", "correct horse battery"


@dataclass
class Tenant:
    name: str
    operator: str
    gateways: list[dict] = field(default_factory=list)
    meters: list[dict] = field(default_factory=list)


class FaultStack:
    """`async with FaultStack(tmp_path, database_url, broker="mosquitto", homes=1) as stack`"""

    def __init__(
        self, tmp_path: Path, database_url: str, *, broker: str = "mosquitto", homes: int = 1,
        tenants: int = 1, roles: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        """`roles`: a scaled-out server, one process per entry (``"ingest-b"`` is role
        ingest, node b), on an external Mosquitto set up by `kenshin server
        mosquitto-config`; the first must be ``"api"``. Default: one process, all roles."""
        self.tmp, self.database_url, self.broker = tmp_path, database_url, broker
        self.homes, self.tenant_count = homes, tenants
        self.roles = roles or ("all",)
        self.servers: dict[str, subprocess.Popen] = {}
        self.role_ports = {name: free_tcp_port() for name in self.roles[1:]}
        self.external_broker = None
        self.cluster = None  # broker "rabbitmq": kenshin.testing.clusters.RabbitCluster
        self.broker_env: dict[str, str] = {}
        self.origin = time.time()
        self.clock = ScaledClock(START, speed=SPEED, origin=self.origin)
        self.http_port, self.mqtt_port = free_tcp_port(), free_tcp_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.agents: dict[int, subprocess.Popen] = {}
        self.identities: list[Path] = []
        self.tenants: list[Tenant] = []
        self.engine: Engine | None = None
        self.meter_port = free_udp_port("127.0.1.1")
        self.fleet = SimFleet(
            homes, self.clock, port=self.meter_port, config=MeterConfig(seed=41, pv=True),
            multicast=False,
        )  # fmt: skip
        self._logs: list = []

    # -- processes -----------------------------------------------------------------------

    def _log(self, name: str):
        handle = (self.tmp / f"{name}.log").open("a")
        self._logs.append(handle)
        return handle

    def server_env(self, name: str = "all") -> dict[str, str]:
        role, _, node = name.partition("-")
        env = {
            "KENSHIN_DATABASE_URL": self.database_url,
            "KENSHIN_PORT": str(self.role_ports.get(name, self.http_port)),
            "KENSHIN_ROLE": role,
            "KENSHIN_NODE_NAME": node or "1",
            "KENSHIN_BROKER": self.broker,
            "KENSHIN_BROKER_AUTH": "dynsec",
            "KENSHIN_MQTT_PORT": str(self.mqtt_port),
            "KENSHIN_MOSQUITTO_DIR": str(self.tmp / "mosquitto"),
            "KENSHIN_SECRET_KEY_FILE": str(self.tmp / "secret.key"),
            # Jobs: gap repair every real second, judging in simulated time; nothing else.
            "KENSHIN_REPAIR_EVERY_S": "1",
            "KENSHIN_REPAIR_DELAY_S": "900",
            "KENSHIN_REPAIR_GATEWAY_EVERY_S": "300",
            "KENSHIN_REPAIR_RESCAN_S": "1800",
            "KENSHIN_REPAIR_ANSWER_S": "10",
            "KENSHIN_FORECAST_EVERY_S": "86400",
            "KENSHIN_ALERTS_EVERY_S": "86400",
            "KENSHIN_WEBHOOKS": "false",
        }
        return {**os.environ, **env, **self.broker_env, "PYTHONPATH": str(ROOT)}

    @property
    def server(self) -> subprocess.Popen | None:
        """The process serving the API."""
        return self.servers.get(self.roles[0])

    async def start_server(self, *names: str) -> None:
        """Start the server's processes (all of them, or those named)."""
        for name in names or self.roles:
            self._spawn(name)
        await self.until(lambda: self.ready(*names), "the server is ready", timeout_s=60)

    def _spawn(self, name: str) -> None:
        self.servers[name] = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.server_runner", START.isoformat(),
             str(SPEED), str(self.origin)],
            cwd=ROOT, env=self.server_env(name), stdout=self._log(f"server-{name}"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill_server(self, *names: str) -> None:
        for name in names or self.roles:
            self.servers[name].send_signal(signal.SIGKILL)
            self.servers[name].wait()

    def ready(self, *names: str) -> bool:
        return all(self._ready(name) for name in names or self.roles)

    def _ready(self, name: str) -> bool:
        process = self.servers.get(name)
        exited = process is not None and process.poll() is not None
        log = (self.tmp / f"server-{name}.log").read_text(errors="replace") if exited else ""
        if exited and name in self.role_ports and "address already in use" in log:
            # A port probed free was taken meanwhile (tests run side by side): another.
            self.role_ports[name] = free_tcp_port()
            self._spawn(name)
            return False
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server {name} exited: {process.returncode}; {self.logs()}")
        try:
            return self.readyz(name, timeout_s=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _start_rabbitmq(self) -> None:
        """A 3-node RabbitMQ cluster asking the API process who may connect."""
        from kenshin.server.broker.rabbitmq import node_config
        from kenshin.testing.clusters import RabbitCluster

        plugins = ("rabbitmq_mqtt", "rabbitmq_management", "rabbitmq_auth_backend_http",
                   "rabbitmq_auth_backend_cache")  # fmt: skip
        self.cluster = RabbitCluster(
            self.tmp / "rabbitmq", plugins=plugins, config_extra=node_config(self.base)
        )
        self.cluster.start()
        self.mqtt_port = self.cluster.mqtt_ports[0]
        login = "kenshin-service:service-secret"
        self.broker = f"mqtt://{login}@127.0.0.1:{self.mqtt_port}"
        others = ",".join(f"127.0.0.1:{p}" for p in self.cluster.mqtt_ports[1:])
        amqp = ",".join(f"amqp://{login}@127.0.0.1:{p}/" for p in self.cluster.amqp_ports)
        admin = f"{self.cluster.username}:{self.cluster.password}"
        self.broker_env = {
            "KENSHIN_BROKER_AUTH": "http",
            "KENSHIN_BROKER_NODES": others,
            "KENSHIN_BROKER_AMQP": amqp,
            "KENSHIN_BROKER_MANAGEMENT": f"http://{admin}@127.0.0.1:{self.cluster.management_ports[0]}",
        }

    async def _start_external_broker(self) -> None:
        """A Mosquitto of its own, as `kenshin server mosquitto-config` sets one up."""
        from kenshin.server.broker.mosquitto import MosquittoProcess

        directory = self.tmp / "mosquitto"
        made = subprocess.run(
            [sys.executable, "-m", "kenshin", "server", "mosquitto-config", str(directory),
             "--port", str(self.mqtt_port), "--json"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.broker = json.loads(made.stdout)["broker"]
        self.external_broker = MosquittoProcess(directory, self.mqtt_port)
        await self.external_broker.start()

    def readyz(self, name: str | None = None, timeout_s: float = 5) -> httpx.Response:
        port = self.role_ports.get(name or self.roles[0], self.http_port)
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s)

    def broker_pid(self) -> int:
        return int((self.tmp / "mosquitto" / "mosquitto.pid").read_text())

    def start_agent(self, index: int) -> None:
        self.agents[index] = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.agent_runner", str(self.identities[index]),
             str(self.tmp / f"queue{index}.db"), START.isoformat(), str(SPEED),
             str(self.origin)],
            cwd=ROOT, stdout=self._log(f"agent{index}"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip

    def kill_agent(self, index: int) -> None:
        self.agents[index].send_signal(signal.SIGKILL)
        self.agents[index].wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log")
        )

    # -- the platform, set up as people would ------------------------------------------

    async def __aenter__(self) -> FaultStack:
        try:
            return await self._set_up()
        except BaseException:  # a half-made stack still stops what it started (a cluster)
            await self.__aexit__(None, None, None)
            raise

    async def _set_up(self) -> FaultStack:
        await self.fleet.__aenter__()
        if self.broker == "rabbitmq":
            await asyncio.to_thread(self._start_rabbitmq)
        elif self.roles != ("all",):
            await self._start_external_broker()
        await self.start_server()
        self.engine = make_engine(self.database_url)
        ensure_admin(self.engine, ADMIN, PASSWORD)
        homes = [list(range(self.homes))[t :: self.tenant_count] for t in range(self.tenant_count)]
        for t, indices in enumerate(homes):
            tenant_id = create_tenant(self.engine, f"Denryoku {t}", "retailer")
            operator = f"ops{t}@example.jp"
            create_user(self.engine, tenant_id, operator, PASSWORD, role="operator")
            tenant = Tenant(f"Denryoku {t}", operator)
            self.tenants.append(tenant)
            await self._install(tenant, indices)
        for index in range(self.homes):
            self.start_agent(index)
        return self

    async def _install(self, tenant: Tenant, indices: list[int]) -> None:
        made = []
        for index in indices:
            identity = Identity.generate(f"GW-F{index:03d}", self.base)
            path = self.tmp / f"identity{index}.json"
            identity.save(path)
            while len(self.identities) <= index:
                self.identities.append(Path())
            self.identities[index] = path
            made.append((identity, new_claim_code()))
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as root:
            await _login(root, ADMIN)
            answer = await root.post(
                "/api/v1/gateways/import", content=_csv(*made),
                headers={"content-type": "text/csv"},
            )  # fmt: skip
            assert answer.status_code < 300, answer.text
        async with self.operator(tenant) as ops:
            await ops.patch(
                "/api/v1/settings/default",
                json={
                    "values": {"poll": {"initial_backfill_days": 1}, "uplink": {"max_delay_s": 2}}
                },
            )
            for index, (_, code) in zip(indices, made, strict=True):
                host, port = self.fleet.addresses[index]
                _, gateway, answer = await install(
                    ops,
                    code,
                    f"pss{index:08d}",
                    {"link": "udp", "udp_host": host, "udp_port": port},
                )
                assert answer.status_code == 201, answer.text
                tenant.gateways.append(gateway)
                tenant.meters.append(answer.json())

    @contextlib.asynccontextmanager
    async def operator(self, tenant: Tenant):
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as ops:
            await _login(ops, tenant.operator)
            yield ops

    async def __aexit__(self, *exc) -> None:
        for agent in self.agents.values():
            with contextlib.suppress(ProcessLookupError):
                agent.kill()
            agent.wait()
        for server in self.servers.values():
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
        for server in self.servers.values():
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if self.external_broker is not None:
            await self.external_broker.stop()
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)
        if self.engine is not None:
            self.engine.dispose()
        await self.fleet.__aexit__(*exc)
        for handle in self._logs:
            handle.close()

    # -- time and waiting ----------------------------------------------------------------

    async def until_sim(self, moment: datetime) -> None:
        await self.clock.sleep_until(moment)

    async def until(self, condition, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n{self.logs()}")
            await asyncio.sleep(0.1)

    def meter_ids(self) -> list[int]:
        return [m["id"] for t in self.tenants for m in t.meters]

    def stored_boundaries(self, meter_id: int) -> dict[tuple[int, int], int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    s.readings_fixed.c.slot_start, s.readings_fixed.c.direction,
                    s.readings_fixed.c.raw,
                ).where(s.readings_fixed.c.meter_id == meter_id)
            ).all()  # fmt: skip
        return {(int(r.slot_start.timestamp()), r.direction): r.raw for r in rows}

    def instant_times(self, meter_id: int) -> set[int]:
        with self.engine.connect() as conn:
            return {
                int(at.timestamp())
                for at in conn.execute(
                    select(s.readings_instant.c.at).where(s.readings_instant.c.meter_id == meter_id)
                ).scalars()
            }

    def first_boundary(self) -> int:
        """The first half hour every test checks: START's (the initial backfill reaches
        further back, and what it brings is checked too)."""
        return int(START.timestamp())

    async def complete_through(self, end: datetime, timeout_s: float = 60.0) -> None:
        last = int(end.timestamp()) // SLOT_S * SLOT_S

        def complete() -> bool:
            for meter_id in self.meter_ids():
                have = self.stored_boundaries(meter_id)
                for boundary in range(self.first_boundary(), last + 1, SLOT_S):
                    if (boundary, 0) not in have:
                        return False
            return True

        await self.until(complete, f"every half hour up to {end}", timeout_s)

    def check_against_registers(self, end: datetime) -> None:
        """Each meter: every half hour from START to `end`, both directions, exactly the
        simulator's register; and every slot energy of the period known (none missing)."""
        last = int(end.timestamp()) // SLOT_S * SLOT_S
        for index, meter_id in enumerate(self.meter_ids()):
            registers = self.fleet.meters[index].registers
            have = self.stored_boundaries(meter_id)
            for boundary in range(self.first_boundary(), last + 1, SLOT_S):
                at = datetime.fromtimestamp(boundary, JST)
                expected = registers.raw(at)
                for direction in (0, 1):
                    assert have.get((boundary, direction)) == expected[direction], (
                        f"meter {meter_id} {at} direction {direction}: "
                        f"{have.get((boundary, direction))} != {expected[direction]}"
                    )
            with self.engine.connect() as conn:
                missing = conn.execute(
                    select(func.count()).select_from(s.slot_energy).where(
                        s.slot_energy.c.meter_id == meter_id,
                        s.slot_energy.c.status == "missing",
                        s.slot_energy.c.slot_start >= _utc(self.first_boundary()),
                        s.slot_energy.c.slot_start < _utc(last),
                    )
                ).scalar()  # fmt: skip
            assert missing == 0, f"meter {meter_id}: {missing} slots without energy"

    def events(self, code: str) -> list:
        with self.engine.connect() as conn:
            return conn.execute(select(s.events).where(s.events.c.code == code)).all()


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, JST)


async def _login(client: httpx.AsyncClient, email: str) -> None:
    answer = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.headers["X-CSRF-Token"]


def at(hours: float) -> datetime:
    """START plus so many simulated hours."""
    return START + timedelta(hours=hours)
