"""Helpers every asyncio test shares (there is no pytest-asyncio: tests call `run`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kenshin.cli.ports import free_udp_port

T = TypeVar("T")
__all__ = ["eventually", "free_udp_port", "run"]


def run(coro: Awaitable[T], timeout_s: float = 15.0) -> T:
    """Run one test's coroutine; a hang fails the test instead of the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
