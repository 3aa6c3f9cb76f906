"""What the server runs beside the HTTP API (a managed broker, the ingest's MQTT session,
the periodic jobs) is supervised: a child that fails or returns is logged and started
again after a back-off with full jitter (a fleet of servers restarted together must not
retry in lockstep), and the back-off starts over once a child has run well for a while.

Each child's state is what `/readyz` reports: ``running`` or ``restarting`` with the last
error, and how often it was restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity import wait_random_exponential as full_jitter

__all__ = ["Child", "Supervisor"]

log = logging.getLogger(__name__)


class ChildExited(Exception):
    """A supervised child returned: it is meant to run until cancelled."""


class _RanWell(Exception):
    """The child failed after a healthy run: start over with the shortest back-off."""


def _first_cause(err: BaseException) -> BaseException:
    """A task group's first error rather than the group (what the log and /readyz say)."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return err


def _restartable(err: BaseException) -> bool:
    """Failures, not cancellation (stop) nor a good run's end (which starts afresh)."""
    return isinstance(err, Exception) and not isinstance(err, _RanWell)


@dataclass
class Child:
    name: str
    run: Callable[[], Awaitable[None]]
    state: str = "starting"  # running | restarting
    restarts: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.monotonic)
    task: asyncio.Task | None = None

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "for_s": round(time.monotonic() - self.since, 1),
        }


class Supervisor:
    def __init__(
        self, *, first_backoff_s: float = 0.5, max_backoff_s: float = 30.0,
        healthy_after_s: float = 60.0,
    ) -> None:  # fmt: skip
        self.first_backoff_s, self.max_backoff_s = first_backoff_s, max_backoff_s
        self.healthy_after_s = healthy_after_s
        self.children: dict[str, Child] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> Child:
        """Run `run()` under supervision until `stop()`."""
        child = Child(name, run)
        child.task = asyncio.create_task(self._keep(child), name=f"supervised {name}")
        self.children[name] = child
        return child

    async def stop(self) -> None:
        tasks = [c.task for c in self.children.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.children.clear()

    def report(self) -> dict[str, dict]:
        return {name: child.as_dict() for name, child in self.children.items()}

    async def _keep(self, child: Child) -> None:
        try:
            await self._keep_running(child)
        except asyncio.CancelledError:
            raise
        except BaseException:  # the supervisor's own bug: say so, never die silently
            log.exception("supervising %s failed", child.name)
            raise

    async def _keep_running(self, child: Child) -> None:
        while True:
            retrying = AsyncRetrying(
                retry=retry_if_exception(_restartable),
                wait=full_jitter(multiplier=self.first_backoff_s, max=self.max_backoff_s),
                before_sleep=lambda state, child=child: self._failed(child, state),
                reraise=True,
            )
            with contextlib.suppress(_RanWell):
                async for attempt in retrying:
                    with attempt:
                        await self._run_once(child)

    async def _run_once(self, child: Child) -> None:
        began = time.monotonic()
        child.state, child.since = "running", began
        try:
            await child.run()
            raise ChildExited(f"{child.name} stopped by itself")
        except Exception as err:
            child.state, child.since = "restarting", time.monotonic()
            cause = _first_cause(err)
            child.last_error = f"{type(cause).__name__}: {cause}"[:300]
            child.restarts += 1
            if child.since - began > self.healthy_after_s:
                log.warning("%s failed after a good run (%s); restarting", child.name, err)
                raise _RanWell() from err
            raise

    @staticmethod
    def _failed(child: Child, state: RetryCallState) -> None:
        delay = state.upcoming_sleep
        log.warning(
            "%s failed (%s); restart %d in %.1f s", child.name, child.last_error,
            child.restarts, delay,
        )  # fmt: skip
