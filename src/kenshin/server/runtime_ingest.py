"""The ingest half of `DeviceService` (`runtime.py`): messages taken off the broker (or a
cluster's queue) as they arrive, written a group a transaction, acknowledged after the
commit, a message that cannot be stored quarantined alone.

Separate from `runtime.py`, which connects and supervises, so what one group's commit
does can be read (and benchmarked: `bench/ingest.py` calls `commit_group`) on its own.
A mixin: it uses the service's `engine`, `counters` and `_oldest_unacked`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
from sqlalchemy import exc

from . import ingest, metrics

log = logging.getLogger("kenshin.server.runtime")  # its lines keep the name they had
GROUP_MAX = 2000  # messages committed together at most
# What says the database (or the way to it) is in trouble, rather than the message: the
# message is held and tried again, never quarantined for it.
Arrival = tuple[str, bytes, Callable[[], Any]]  # topic, payload, acknowledge after the commit
UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, psycopg.OperationalError,
               psycopg.InterfaceError)  # fmt: skip


class IngestMixin:
    async def _consume(self, source: AsyncIterator[Arrival]) -> None:
        """Two stages: messages are taken off the connection as they arrive while the
        previous group is decoded and written in a thread; then everything that arrived
        meanwhile goes into one transaction (one commit for many is most of the ingest's
        speed under load) and is acknowledged after its commit. Decoding stays off this
        loop: in one process with the embedded broker and the web server (the demo), a
        backfill's worth of decoding here would stall them all."""
        arrived: list[tuple[Callable, str, bytes, float]] = []
        waiting = asyncio.Event()

        async def receive() -> None:
            async for topic, payload, ack in source:
                now = time.monotonic()
                arrived.append((ack, topic, payload, now))
                if self._oldest_unacked is None:
                    self._oldest_unacked = now
                waiting.set()

        async def commit() -> None:
            while True:
                await waiting.wait()
                group = arrived[:GROUP_MAX]
                del arrived[:GROUP_MAX]
                if not arrived:
                    waiting.clear()
                work = [(topic, payload) for _, topic, payload, _ in group]
                delay = 0.5
                # The database is down: hold these messages (unacknowledged) and try
                # again, rather than move on; MQTT 3.1.1 redelivers unacked messages only
                # at reconnection.
                while (outcomes := await asyncio.to_thread(self.commit_group, work)) is None:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 15.0)
                for (ack, *_), outcome in zip(group, outcomes, strict=True):
                    done = ack()  # committed (or quarantined)
                    if done is not None:
                        await done
                    self._count(outcome.kind)
                    metrics.ingested(outcome)
                self._oldest_unacked = arrived[0][3] if arrived else None

        async with asyncio.TaskGroup() as stages:
            stages.create_task(receive())
            stages.create_task(commit())

    def commit_group(
        self, work: list[tuple[str, bytes]], decoded: list[ingest.Decoded] | None = None
    ) -> list[ingest.Outcome] | None:
        """All in one transaction; if that fails, each alone (so one message that breaks
        its transaction holds back only itself). None: the database is unreachable (the
        ones committed so far come again with the rest: redelivery is idempotent)."""
        if len(work) > 1:
            if decoded is None:  # before the transaction begins: it holds locks
                decoded = [ingest.decode(topic, payload) for topic, payload in work]
            try:
                with self.engine.begin() as conn:
                    outcomes = ingest.handle_group(conn, work, decoded)
                self._count("groups")
                return outcomes
            except Exception as err:
                log.info("a group of %d failed (%s); committing one by one", len(work), err)
        outcomes = []
        for topic, payload in work:
            outcome = self._commit(topic, payload)
            if outcome is None:
                return None
            outcomes.append(outcome)
        return outcomes

    def _commit(self, topic: str, payload: bytes) -> ingest.Outcome | None:
        try:
            with self.engine.begin() as conn:
                return ingest.handle(conn, topic, payload)
        except UNAVAILABLE as err:  # no ack: the caller tries again
            return self._unavailable(topic, err)
        except Exception as err:  # this message's own trouble: it would fail forever
            reason = f"could not be stored: {type(err).__name__}: {err}"[:500]
        try:
            with self.engine.begin() as conn:
                outcome = ingest.quarantine(conn, topic, payload, reason)
        except Exception as err:
            return self._unavailable(topic, err)
        log.warning("ingest quarantined a message on %s: %s", topic, reason)
        return outcome

    def _unavailable(self, topic: str, err: Exception) -> None:
        log.warning("ingest could not commit a message on %s: %s", topic, err)
        self._count("ingest_errors")
        return None

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1
