"""The agent supervises its own tasks. A poller or an uplink that dies of an unexpected
error is started again (after a short backoff), the failure is counted in the Status and
reported as an Event, and readings keep coming; a command that fails in any way answers a
failed result and the agent goes on. Real parts: the embedded broker, aiomqtt on both
ends, a simulated meter over UDP on 127.0.1.1, the poller on a simulated clock; the one
fault is injected once into a part the agent uses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from kenshin.gateway import agent as agent_module
from kenshin.gateway import commands as gateway_commands
from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity
from kenshin.gateway.poller import MeterPoller
from kenshin.sim.clock import JST, ScaledClock
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig
from kenshin.wire import Command, CommandResult, Event, ReadingsBatch, Settings, Status
from tests.gateway.cloud import Cloud
from tests.support import eventually, free_udp_port, run

SERIAL = "GW-S"
SPEED = 20.0  # simulated seconds per second: an instant read every 0.1 s


def fail_once(owner, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`owner.name` raises once, then is itself again."""
    real = getattr(owner, name)
    calls = []

    def once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"injected into {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, once)


@contextlib.asynccontextmanager
async def gateway_with_meter(
    tmp_path, serial: str = SERIAL
) -> AsyncIterator[tuple[Cloud, object, SimFleet, GatewayAgent]]:
    """An agent reading a UDP meter at `SPEED`, its settings retained on the cloud's broker;
    yields the cloud, the cloud's service client, the meter fleet and the agent."""
    clock = ScaledClock(datetime(2026, 7, 1, 10, 0, tzinfo=JST), speed=SPEED)
    meter_port = free_udp_port("127.0.1.1")
    meter = {"link": "udp", "host": "127.0.1.1", "port": meter_port, "ref": "m1"}
    values = {"meter": meter, "poll": {"instant_interval_s": 2}, "uplink": {"max_delay_s": 0.2}}
    options = AgentOptions(queue_path=tmp_path / "q.db", restart_backoff_s=(0.05, 0.1))
    async with (
        SimFleet(1, clock, port=meter_port, config=MeterConfig(seed=5)) as fleet,
        Cloud() as cloud,
        cloud.service() as service,
    ):
        await cloud.send(service, Settings(1, int(time.time()), values), serial, retain=True)
        agent = GatewayAgent(Identity.generate(serial, cloud.url), options, clock=clock)
        running = asyncio.create_task(agent.run_forever())
        try:
            yield cloud, service, fleet, agent
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


def samples(cloud: Cloud) -> int:
    return sum(len(batch.instant) for batch in cloud.of(ReadingsBatch))


async def failure_reported(cloud: Cloud, task: str) -> None:
    def seen() -> bool:
        events = [e for e in cloud.of(Event) if e.code == "task_failed"]
        statuses = [s for s in cloud.of(Status) if s.errors.get(f"{task}_failed") == 1]
        return bool(events and statuses)

    await eventually(seen, timeout_s=10)
    [event] = [e for e in cloud.of(Event) if e.code == "task_failed"]
    assert event.detail == {
        "task": task,
        "error": f"RuntimeError: injected into {task_fault[task]}",
    }


task_fault = {"poller": "read_instant", "uplink": "build_batches"}


@pytest.mark.parametrize(
    ("task", "owner"), [("poller", MeterPoller), ("uplink", agent_module)], ids=["poller", "uplink"]
)
def test_a_task_that_dies_is_started_again_and_reported(tmp_path, monkeypatch, task, owner):
    fail_once(owner, task_fault[task], monkeypatch)

    async def main() -> None:
        async with gateway_with_meter(tmp_path) as (cloud, _, _, agent):
            await failure_reported(cloud, task)
            # Readings go on: the meter is read and its samples sent after the restart.
            sent = samples(cloud)
            await eventually(lambda: samples(cloud) >= sent + 5, timeout_s=10)
            assert agent.state.errors == {f"{task}_failed": 1}

    run(main(), timeout_s=30)


def test_a_command_failing_in_any_way_answers_failed_and_the_agent_goes_on(tmp_path, monkeypatch):
    async def main() -> None:
        async with gateway_with_meter(tmp_path) as (cloud, service, _, agent):
            await eventually(lambda: agent.meter is not None and samples(cloud) > 0, 10)
            # Only the command's path (the poller reads properties too): its answer fails.
            fail_once(gateway_commands, "to_jsonable", monkeypatch)
            expires = int(time.time()) + 60
            for n in (1, 2):
                read = Command(n, "read_property", expires, {"epc": "0xE7"})
                await cloud.send(service, read, SERIAL)
                await eventually(lambda n=n: any(r.id == n for r in cloud.of(CommandResult)))
            first, second = cloud.of(CommandResult)
            assert (first.ok, first.error) == (False, "RuntimeError: injected into to_jsonable")
            assert second.ok and isinstance(second.result["value"], int)
            sent = samples(cloud)
            await eventually(lambda: samples(cloud) > sent, timeout_s=10)
            assert agent.state.errors == {}  # nothing else failed, nothing restarted

    run(main(), timeout_s=30)
