"""The supervisor restarts what fails, with a jittered back-off, and stops cleanly."""

from __future__ import annotations

import asyncio

from kenshin.server.supervisor import Supervisor
from tests.support import eventually, run


def test_a_failing_child_is_restarted_until_it_runs_and_its_state_is_reported():
    async def scenario():
        supervisor = Supervisor(first_backoff_s=0.01, max_backoff_s=0.05)
        calls = []
        running = asyncio.Event()

        async def flaky() -> None:
            calls.append(1)
            if len(calls) < 4:
                raise ConnectionError(f"try {len(calls)}")
            running.set()
            await asyncio.Event().wait()

        supervisor.start("flaky", flaky)
        await asyncio.wait_for(running.wait(), 5)
        report = supervisor.report()["flaky"]
        assert report["state"] == "running" and report["restarts"] == 3
        assert report["last_error"] == "ConnectionError: try 3"
        await supervisor.stop()
        assert supervisor.report() == {}

    run(scenario())


def test_a_child_that_returns_is_started_again():
    async def scenario():
        supervisor = Supervisor(first_backoff_s=0.01, max_backoff_s=0.01)
        starts = []

        async def returns() -> None:
            starts.append(1)

        supervisor.start("returns", returns)
        await eventually(lambda: len(starts) >= 3)
        assert "stopped by itself" in supervisor.report()["returns"]["last_error"]
        await supervisor.stop()

    run(scenario())


def test_after_a_good_run_the_back_off_starts_over():
    """Ten failures in a row wait up to max_backoff_s; a failure after a healthy run waits
    no longer than the first back-off."""

    async def scenario():
        supervisor = Supervisor(first_backoff_s=0.01, max_backoff_s=60, healthy_after_s=0.05)
        starts: list[float] = []
        loop = asyncio.get_running_loop()

        async def child() -> None:
            starts.append(loop.time())
            if len(starts) <= 6:
                raise RuntimeError("early")
            await asyncio.sleep(0.1)  # a good run, then a failure
            raise RuntimeError("late")

        supervisor.start("child", child)
        await eventually(lambda: len(starts) >= 9, timeout_s=20)
        await supervisor.stop()
        assert starts[8] - starts[7] < 0.1 + 0.05  # restarted without the grown back-off

    run(scenario(), timeout_s=30)


def test_stop_cancels_a_child_in_its_back_off():
    async def scenario():
        supervisor = Supervisor(first_backoff_s=30, max_backoff_s=30)

        async def fails() -> None:
            raise RuntimeError("down")

        supervisor.start("fails", fails)
        await eventually(lambda: supervisor.report()["fails"]["restarts"] == 1)
        await asyncio.wait_for(supervisor.stop(), 2)

    run(scenario())
