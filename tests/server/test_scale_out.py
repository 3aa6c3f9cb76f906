"""Several servers on one database: each job once per period between them, and an ingest
session name held by one live process only."""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import time
import uuid

import pytest

from kenshin.server import runtime
from kenshin.server.jobs import Job, JobRunner
from kenshin.server.runtime import DeviceService, NodeNameTaken
from kenshin.server.security import CredentialBox

from .conftest import KEY


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_job_runners_run_each_job_once_per_period(engine):
    runs: list[tuple[str, float]] = []
    period = 0.3

    def job(who: str):
        def run(engine, now) -> None:
            runs.append((who, time.monotonic()))

        return Job("counted", period, run)

    async def scenario() -> None:
        first = JobRunner(engine, [job("first")])
        second = JobRunner(engine, [job("second")])
        await first.start()
        await asyncio.sleep(period / 2)  # out of phase, as two servers would be
        await second.start()
        await asyncio.sleep(3.0)
        await first.stop()
        await second.stop()
        assert sum(first.skipped.values()) + sum(second.skipped.values()) >= 5

    asyncio.run(scenario())
    times = sorted(t for _, t in runs)
    assert 6 <= len(times) <= 12, runs  # one per period, not one per runner and period
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.9 * period - 0.05


def test_an_ingest_node_name_is_held_by_one_live_process(engine, monkeypatch):
    first = DeviceService(engine, CredentialBox(KEY), node_name="7")
    first._hold_node_name()
    monkeypatch.setattr(runtime, "HOLDER", "elsewhere.example:4242")
    second = DeviceService(engine, CredentialBox(KEY), node_name="7")
    with pytest.raises(NodeNameTaken, match=r"held by .*:\d+: give each ingest process"):
        second._hold_node_name()
    DeviceService(engine, CredentialBox(KEY), node_name="8")._hold_node_name()


def test_a_dead_holder_on_this_host_gives_the_name_up_at_once(engine, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    monkeypatch.setattr(runtime, "HOLDER", f"{socket.gethostname()}:{dead.pid}")
    DeviceService(engine, CredentialBox(KEY), node_name="7")._hold_node_name()
    monkeypatch.undo()
    DeviceService(engine, CredentialBox(KEY), node_name="7")._hold_node_name()  # taken over


@pytest.mark.parametrize("backend", ["postgresql"])
def test_one_process_pushes_and_another_takes_over_when_it_dies(engine):
    """The pushers' lock: one holder; its session ended (a killed process), the next try
    of another takes it at once."""
    from sqlalchemy import func, select

    from kenshin.server.leader import Leadership

    name = f"pushers {uuid.uuid4()}"  # not the lock of a server another test runs here
    first, second = Leadership(engine, name), Leadership(engine, name)
    assert first.held() and first.held()
    assert not second.held()
    with engine.connect() as conn:  # as if the first process were killed
        pid = first._conn.connection.dbapi_connection.info.backend_pid
        conn.execute(select(func.pg_terminate_backend(pid)))
    assert second.held()
    assert not first.held()  # it notices its session is gone, and the lock is taken
    second.release()
    assert first.held()
    first.release()
