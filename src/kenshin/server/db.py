"""Engines and migrations.

`make_engine(url)` gives an engine set up for the backend:

- **SQLite** (the embedded default): WAL journal (readers never wait for the writer),
  `foreign_keys=ON` on every connection, a 30 s busy timeout, connections usable from the
  worker threads FastAPI runs handlers on. pysqlite's own transaction handling is kept: it
  opens the transaction at the first write, so a request that reads and then writes waits
  for the write lock instead of failing on a stale WAL snapshot.
- **PostgreSQL** through psycopg 3: ``postgresql://`` and ``postgres://`` URLs are taken
  to mean ``postgresql+psycopg://``; pooled connections are pinged before use.

`migrate(url_or_engine)` brings a database to the newest schema with Alembic, in code: the
scripts live beside this module (so it works from an installed wheel) and no alembic.ini
is read. It is idempotent, and on PostgreSQL serialised with an advisory lock, so several
server processes may start at once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url, pool
from sqlalchemy.engine import URL

__all__ = [
    "MIGRATIONS_DIR",
    "PING_IDLE_S",
    "alembic_config",
    "current_revision",
    "head_revision",
    "make_engine",
    "migrate",
    "normalize_url",
    "sqlite_path",
]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant will do; it only has to be the same in every Kenshin process.
_MIGRATION_LOCK_ID = 0x6B656E7368696E  # "kenshin"


def normalize_url(url: str | URL) -> URL:
    """The URL with its driver made explicit (psycopg 3 for PostgreSQL)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None (another backend, or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(
    url: str | URL,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout: float | None = None,
    **kwargs: Any,
) -> Engine:
    """`pool_size`, `max_overflow` and `pool_timeout` size the connection pool (SQLAlchemy's
    defaults when None); an in-memory SQLite database has one shared connection and no pool
    to size."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    sizes = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if backend == "postgresql" or sqlite_path(parsed) is not None:
        kwargs.update({k: v for k, v in sizes.items() if v is not None})
    if backend == "sqlite":
        connect_args = {"check_same_thread": False, "timeout": 30.0}
        connect_args.update(kwargs.pop("connect_args", {}))
        in_memory = sqlite_path(parsed) is None
        if in_memory:
            # One shared connection, or every thread would see its own empty database.
            kwargs.setdefault("poolclass", pool.StaticPool)
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect(wal=not in_memory))
        return engine
    if backend == "postgresql":
        # The session zone pinned to UTC: SQL that casts or truncates a timestamptz then
        # means the same whatever the server's default zone, and psycopg hands back
        # datetimes in the fixed `timezone.utc` (a zoneinfo zone such as the common
        # 'Etc/UTC' made reading a day of 60-s power several times slower).
        connect_args = {"options": "-c TimeZone=UTC"}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            _ping_when_idle(engine)
        return engine
    raise ValueError(f"unsupported database {parsed.render_as_string(hide_password=True)!r}")


PING_IDLE_S = 1.0
_IDLE_SINCE = "kenshin_idle_since"


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it has been idle more than `PING_IDLE_S`
    (SQLAlchemy's `pool_pre_ping` pings at every checkout); one that fails the ping
    renews the whole pool and another is taken, as with `pool_pre_ping`.

    Why: under load a connection is back in use milliseconds after it was returned, and
    the ping was one more round trip, in every request, beside the one query a read needs
    (issue 21). What the ping is for, connections that died while idle (a database
    restart, a failover, an idle timeout on the way), is still caught. A connection used
    within `PING_IDLE_S` of a restart fails its statement instead; SQLAlchemy then renews the
    whole pool, and the request is answered 503 with Retry-After (problems.py), so at
    most the requests under way then, and those that took a connection before the first
    failure (the pool's size), see the restart."""

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)  # None: connected just now
        idle = since is not None and time.monotonic() - since > PING_IDLE_S
        if idle and not _answers(engine, dbapi_connection):
            raise exc.InvalidatePoolError()  # the pool renews itself, tries another


def _answers(engine: Engine, dbapi_connection: Any) -> bool:
    try:
        return bool(engine.dialect.do_ping(dbapi_connection))
    except engine.dialect.loaded_dbapi.Error:
        return False


def _sqlite_on_connect(wal: bool):
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA busy_timeout = 30000")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    return on_connect


def alembic_config(connection: Any = None):
    """An Alembic `Config` for Kenshin's migrations, made in code (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# Alembic's `context` and `op` are module globals, set for the migration that runs: two
# migrations at once in one process (two apps starting in threads, as the tests and the
# demo do) crossed ("no such table", KeyError 'config'). One at a time, then.
_MIGRATING = threading.Lock()


def migrate(url_or_engine: str | URL | Engine, revision: str = "head") -> str | None:
    """Upgrade the database to `revision` (default: the newest); return where it now is."""
    from alembic import command

    engine, owned = _engine(url_or_engine)
    try:
        with _MIGRATING, engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
            before = _revision_of(connection)
            command.upgrade(alembic_config(connection), revision)
            after = _revision_of(connection)
        if before != after:
            log.info("database migrated from %s to %s", before or "empty", after)
        return after
    finally:
        if owned:
            engine.dispose()


def current_revision(url_or_engine: str | URL | Engine) -> str | None:
    """The database's revision (None: never migrated)."""
    engine, owned = _engine(url_or_engine)
    try:
        with engine.connect() as connection:
            return _revision_of(connection)
    finally:
        if owned:
            engine.dispose()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _revision_of(connection: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _engine(url_or_engine: str | URL | Engine) -> tuple[Engine, bool]:
    if isinstance(url_or_engine, Engine):
        return url_or_engine, False
    return make_engine(url_or_engine), True
