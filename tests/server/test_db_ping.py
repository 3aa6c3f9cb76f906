"""Pooled PostgreSQL connections are pinged only after they sat idle (db.py): one that died
while idle is replaced before use; one that died between two quick uses fails one
statement, the pool is renewed whole, and a request is answered 503 with Retry-After."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from kenshin.server import db

from .conftest import assert_problem, login

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


def _pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_that_died_while_idle_is_replaced_before_use(database_url, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_S", 0.0)  # every checkout after the first is "idle"
    engine = db.make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        dead = _pid(engine)
        _terminate(database_url, dead)
        assert _pid(engine) != dead  # no error: the ping found it dead
    finally:
        engine.dispose()


def test_a_connection_that_died_between_quick_uses_fails_once_then_the_pool_is_new(
    database_url, monkeypatch
):
    monkeypatch.setattr(db, "PING_IDLE_S", 1e9)  # never idle long enough to be pinged
    engine = db.make_engine(database_url, pool_size=2, max_overflow=0)
    try:
        with engine.connect() as one, engine.connect() as two:  # two connections pooled
            pids = {c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in (one, two)}
        for pid in pids:
            _terminate(database_url, pid)
        with pytest.raises(DBAPIError) as lost:
            _pid(engine)
        assert lost.value.connection_invalidated
        # The whole pool was renewed: the other dead connection is not used either.
        assert {_pid(engine), _pid(engine)}.isdisjoint(pids)
    finally:
        engine.dispose()


def test_a_request_whose_connection_was_lost_is_answered_503_and_the_next_is_served(
    app, client, world, monkeypatch
):
    monkeypatch.setattr(db, "PING_IDLE_S", 1e9)
    viewer = login(client, "viewer@a.test")
    assert viewer.get("/api/v1/sites").status_code == 200
    engine: Engine = app.state.engine
    for record in list(engine.pool._pool.queue):  # every connection the pool holds
        _terminate(
            engine.url.render_as_string(hide_password=False),
            record.dbapi_connection.info.backend_pid,
        )
    answer = viewer.get("/api/v1/sites")
    assert "lost" in assert_problem(answer, 503)["detail"]
    assert answer.headers["Retry-After"] == "1"
    assert viewer.get("/api/v1/sites").status_code == 200
