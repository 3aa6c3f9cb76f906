"""Wakes across processes: a change made by one server process (an API request that sets a
command, a setting, an enrollment) tells the processes running the pushers (role `ingest`)
at once through PostgreSQL's LISTEN/NOTIFY, rather than at their next 30-s round.

A lost wake costs only a delay: the pushers look at the database every round anyway. On
SQLite (one process) there is nothing to tell: `notify` does nothing and `listen` returns.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine

__all__ = ["CHANNEL", "listen", "notify"]

log = logging.getLogger(__name__)
CHANNEL = "kenshin_push"


def _postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def notify(engine: Engine) -> None:
    """Tell every listening process to push now (after the caller's commit)."""
    if not _postgresql(engine):
        return
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
    except Exception as err:  # the pushers' own round comes anyway
        log.info("could not notify the pushers: %s", err)


async def listen(engine: Engine, wake: asyncio.Event) -> None:
    """Set `wake` at each notification, until cancelled or the connection drops (an error:
    run it under the supervisor)."""
    if not _postgresql(engine):
        return
    import psycopg

    url = engine.url.set(drivername="postgresql")
    conninfo = url.render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        wake.set()  # whatever was told while we were not listening
        async for _ in conn.notifies():
            wake.set()
