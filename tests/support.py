"""Helpers every asyncio test shares (there is no pytest-asyncio: tests call `run`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kenshin.cli.ports import free_udp_port

T = TypeVar("T")
__all__ = ["eventually", "free_udp_port", "run"]


CANCEL_GRACE_S = 10.0  # how long a timed-out test may take to unwind once cancelled


def run(coro: Awaitable[T], timeout_s: float = 15.0) -> T:
    """Run one test's coroutine; a hang fails the test instead of the suite.

    Also when the hang is in the unwinding: a coroutine that does not finish within
    `CANCEL_GRACE_S` of being cancelled is left behind (`asyncio.run` would wait for it
    for ever, and the whole run with it) and the error shows where it was stuck.
    """

    async def bounded() -> T:
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if task in done:
            return task.result()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
        if task in done:
            raise TimeoutError(f"the test did not finish in {timeout_s} s")
        raise TimeoutError(
            f"the test did not finish in {timeout_s} s, nor stop when cancelled; "
            f"stuck in:\n{_stacks(asyncio.all_tasks())}"
        )

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(bounded())
    finally:
        _close(loop)


def _stacks(tasks: set[asyncio.Task]) -> str:
    """Each task's chain of awaits, outermost first (Task.get_stack shows only the top)."""
    lines = []
    for task in tasks:
        where, awaited = [], task.get_coro()
        while awaited is not None and getattr(awaited, "cr_frame", None) is not None:
            frame = awaited.cr_frame
            where.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
            awaited = awaited.cr_await
        lines.append(f"  {task.get_name()}: " + " -> ".join(where or ["not started"]))
    return "\n".join(lines)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """As `asyncio.run` ends, but without waiting for ever on a task that will not stop."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=CANCEL_GRACE_S))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), CANCEL_GRACE_S))
    loop.close()


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
