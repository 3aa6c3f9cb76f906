"""One process of many does a thing: a PostgreSQL session-level advisory lock held on a
connection of its own. Used for the pushers (settings and commands to gateways): with two
ingest processes both pushing, every command would go out twice.

A process that dies (even by SIGKILL) loses its connection, and PostgreSQL frees the lock at
once, so another process takes over at its next try, without waiting out a lease. A process
whose connection dropped (a database restart) is no longer the holder until it takes the
lock again. On SQLite there is one process: it always holds it.
"""

from __future__ import annotations

import logging
import zlib

from sqlalchemy import Connection, Engine, func, select

__all__ = ["Leadership"]

log = logging.getLogger(__name__)


class Leadership:
    """`held()`: whether this process holds the lock named `name` now (taking it when free).
    Blocking: call it from a thread."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name = engine, name
        self.key = zlib.crc32(f"kenshin leader {name}".encode()) - 2**31
        self._conn: Connection | None = None

    def held(self) -> bool:
        if self.engine.dialect.name != "postgresql":
            return True
        if self._conn is not None:
            try:
                self._conn.execute(select(1))  # still ours while the session lives
                self._conn.commit()
                return True
            except Exception as err:
                log.warning("lost the %s lock with its connection: %s", self.name, err)
                self.release()
        conn = self.engine.connect()
        try:
            taken = conn.execute(select(func.pg_try_advisory_lock(self.key))).scalar()
            conn.commit()
        except Exception:
            conn.close()
            raise
        if not taken:
            conn.close()
            return False
        log.info("this process now does the %s", self.name)
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()  # closes the session: the lock goes with it
            finally:
                self._conn = None
