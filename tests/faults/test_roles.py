"""A scaled-out server: one API process, two ingest processes and two job runners as
separate `kenshin server run --role ...` processes on PostgreSQL and an external Mosquitto
set up by `kenshin server mosquitto-config` (the deployment of docs/scaling.md). Gateways
enroll through the API process, their readings are stored by whichever ingest takes them,
and killing one ingest and one job runner mid-stream loses nothing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from kenshin.server import schema as s
from tests.support import run

from .stack import FaultStack

pytestmark = pytest.mark.slow
ROLES = ("api", "ingest-a", "ingest-b", "jobs-a", "jobs-b")


def test_roles_in_separate_processes_share_the_work_and_survive_a_kill(tmp_path, postgres_url):
    async def scenario() -> None:
        async with FaultStack(tmp_path, postgres_url, homes=2, roles=ROLES) as stack:
            await stack.until(
                lambda: all(stack.instant_times(m) for m in stack.meter_ids()),
                "readings flow through the split server",
            )
            # Both ingest processes are connected at once: distinct client ids.
            for name in ("ingest-a", "ingest-b"):
                parts = _readyz(stack, name)["parts"]
                assert parts["ingest"]["ok"], parts
            assert "ingest" not in _readyz(stack, "api")["parts"]
            with stack.engine.connect() as conn:
                nodes = conn.execute(select(s.ingest_nodes.c.node_name)).scalars().all()
            assert sorted(nodes) == ["a", "b"]

            # A command made through the API reaches the gateway at once (NOTIFY wakes the
            # ingest's pushers; without it they would look after 30 s).
            tenant = stack.tenants[0]
            async with stack.operator(tenant) as ops:
                asked = time.monotonic()
                lease = await ops.post(f"/api/v1/meters/{tenant.meters[0]['id']}/live")
                assert lease.status_code == 200, lease.text
            command_id = lease.json()["command_id"]
            await stack.until(
                lambda: _command_state(stack, command_id) == "done",
                "the gateway answered the command",
                timeout_s=20,
            )
            assert time.monotonic() - asked < 15

            # kill -9 of one ingest and one job runner; the service manager starts the
            # ingest again (its session holds the readings Mosquitto gave its share while it
            # was down); the other job runner takes the jobs over.
            stack.kill_server("ingest-a", "jobs-a")
            await stack.until_sim(stack.clock.now() + timedelta(minutes=20))
            await stack.start_server("ingest-a")
            end = stack.clock.now() + timedelta(hours=1.5)
            await stack.until_sim(end)
            await stack.complete_through(end)
            stack.check_against_registers(end)
            with stack.engine.connect() as conn:
                holders = dict(conn.execute(select(s.job_runs.c.name, s.job_runs.c.holder)).all())
            assert holders, "the surviving job runner runs the jobs"

    run(scenario(), timeout_s=240)


def _readyz(stack: FaultStack, name: str) -> dict:
    answer = stack.readyz(name)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _command_state(stack: FaultStack, command_id: int) -> str:
    with stack.engine.connect() as conn:
        return conn.execute(
            select(s.commands.c.state).where(s.commands.c.id == command_id)
        ).scalar()
