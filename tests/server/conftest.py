"""Server fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL is the server at ``$KENSHIN_TEST_POSTGRES_URL`` (default: the local one, user
postgres, database ``test``). Each test session (each xdist worker is one) makes its own
uniquely named databases there and drops them, so parallel runs never meet. Unreachable,
its tests are skipped, unless ``CI=true``, where they fail.

Migrations run once per session, into a template (a PostgreSQL template database, a
SQLite file); each test gets a copy, which is much cheaper than migrating again.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, make_url
from sqlalchemy.engine import URL

from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.server import security
from kenshin.server.app import create_app
from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
from kenshin.server.db import migrate
from kenshin.server.devices import registry
from kenshin.server.settings import Settings
from kenshin.wire.enrollment import b64encode

PG_ADMIN_URL = os.environ.get(
    "KENSHIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")
PASSWORD = "correct horse battery"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


class PostgresDatabases:
    """Makes uniquely named databases on the test server; drops them all at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url).set(drivername="postgresql")
        # The pid in the name: databases of a run that was killed before its end (they
        # are dropped at the session's end) are found and dropped by the next run.
        self.prefix = f"kenshin_test_{os.getpid()}_{secrets.token_hex(2)}"
        self.created: list[str] = []

    def _admin(self):
        import psycopg

        conninfo = self.admin_url.render_as_string(hide_password=False)
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)

    def check(self) -> None:
        with self._admin() as conn:
            conn.execute("SELECT 1")

    def create(self, template: str | None = None) -> URL:
        """A new database: empty, or a copy of the database `template`."""
        from psycopg import sql

        name = f"{self.prefix}_{len(self.created)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self._admin() as conn:
            conn.execute(statement)
        self.created.append(name)
        return self.admin_url.set(drivername="postgresql+psycopg", database=name)

    def drop(self, *names: str) -> None:
        from psycopg import sql

        with self._admin() as conn:
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def drop_all(self) -> None:
        self.drop(*self.created)

    def drop_orphans(self) -> None:
        """Drop the test databases of processes of this machine that are gone."""
        with self._admin() as conn:
            names = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'kenshin\\_test\\_%'"
            ).fetchall()
        orphans = []
        for (name,) in names:
            pid = name.split("_")[2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                orphans.append(name)
        self.drop(*orphans)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(PG_ADMIN_URL)
    try:
        databases.check()
    except Exception as err:  # psycopg.OperationalError, or no psycopg at all
        _unavailable(str(err).strip().splitlines()[0] if str(err).strip() else repr(err))
    databases.drop_orphans()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresDatabases) -> str:
    """The name of a database migrated once for the session, copied by each test."""
    url = postgres.create()
    migrate(url.render_as_string(hide_password=False))  # disposes its engine: copyable
    return url.database


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "kenshin.db"
    migrate(f"sqlite:///{path}")
    return path


def copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's own backup: a consistent copy, whatever is still in the WAL file."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_database_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> str:
    """A database with nothing in it, not even migrations."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'kenshin.db'}"
    postgres: PostgresDatabases = request.getfixturevalue("postgres")
    return postgres.create().render_as_string(hide_password=False)


@pytest.fixture
def database_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database with no rows, the test's own: a copy of the template."""
    if backend == "sqlite":
        copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path / "kenshin.db")
        yield f"sqlite:///{tmp_path / 'kenshin.db'}"
        return
    postgres: PostgresDatabases = request.getfixturevalue("postgres")
    url = postgres.create(template=request.getfixturevalue("postgres_template"))
    yield url.render_as_string(hide_password=False)
    # Dropped with the rest at the session's end, not now: PostgreSQL 15 makes every DROP
    # DATABASE wait for a checkpoint, which writes out what every other worker's database
    # has dirty (0.6 s a test here; a few MB of disk a copy is the price).


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt at a test-friendly cost (the format and verification are the same)."""
    monkeypatch.setattr(security, "_SCRYPT_N", 2**10)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        devices=False,  # the HTTP API alone; the MQTT side has its own tests
        jobs=False,  # nor periodic jobs writing events while a test counts them
    )


@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
def engine(app) -> Engine:
    return app.state.engine


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """A client of the started application (lifespan run: migrated)."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def new_client(app, client: TestClient) -> Iterator[Callable[[], TestClient]]:
    """More clients of the same started application, each with its own cookie jar."""
    made: list[TestClient] = []

    def make() -> TestClient:
        made.append(TestClient(app))
        return made[-1]

    yield make
    for c in made:
        c.close()


def login(client: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    # What a cookie-authenticated client sends back with every unsafe request (csrf.py).
    client.headers["X-CSRF-Token"] = response.headers["X-CSRF-Token"]
    return client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class World:
    """Two tenants with users of every role, and a platform administrator."""

    def __init__(self, engine: Engine) -> None:
        self.root_id, _ = ensure_admin(engine, "root@kenshin.test", PASSWORD)
        self.tenant_a = create_tenant(
            engine, "Tenant A", "retailer", admin_email="admin@a.test", admin_password=PASSWORD
        )
        self.tenant_b = create_tenant(
            engine, "Tenant B", "generator", admin_email="admin@b.test", admin_password=PASSWORD
        )
        self.operator_a = create_user(
            engine, self.tenant_a, "operator@a.test", PASSWORD, "operator"
        )
        self.viewer_a = create_user(engine, self.tenant_a, "viewer@a.test", PASSWORD, "viewer")
        self.viewer_b = create_user(engine, self.tenant_b, "viewer@b.test", PASSWORD, "viewer")


@pytest.fixture
def world(engine: Engine, client: TestClient) -> World:
    return World(engine)


def subscribe_webhook(engine: Engine, tenant_id: int, kinds: list[str]) -> int:
    """A webhook of `tenant_id` for `kinds`, straight into the table (the outbox is written
    only for a tenant with a subscription); returns its id."""
    from sqlalchemy import insert

    from kenshin.server import schema as s

    with engine.begin() as conn:
        return conn.execute(
            insert(s.webhooks).values(
                tenant_id=tenant_id, url="https://hooks.example/in", kinds=kinds, secret_enc=b"x"
            )
        ).inserted_primary_key[0]


def assert_problem(response, status: int) -> dict:
    """The response is an RFC 9457 problem with `status`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    return body


KEY = b"k" * 32  # the device key the fleet's claim codes are checked with


@pytest.fixture
def fleet(engine, world):
    """Tenant A with a claimed gateway GW-A (site, UDP meter); GW-B unclaimed."""
    identities = {serial: Identity.generate(serial, "http://x") for serial in ("GW-A", "GW-B")}
    codes = {serial: new_claim_code() for serial in identities}
    text = "serial,model,public_key,claim_code\n" + "".join(
        f"{sn},m,{b64encode(i.public_key)},{codes[sn]}\n" for sn, i in identities.items()
    )
    with engine.begin() as conn:
        report = registry.import_identities(conn, text, KEY, "system")
        assert report.added == 2 and not report.errors
        site = registry.add_site(
            conn, world.tenant_a, "system", customer_id="C1", service_code="pss12345678"
        )
        gateway = registry.claim_gateway(
            conn,
            world.tenant_a,
            key=KEY,
            actor="system",
            claim_code=codes["GW-A"].lower(),
            site_id=site.id,
        )
    return {"gateway": gateway, "site": site, "codes": codes}


def udp_meter(engine, world, fleet):
    """A UDP meter behind GW-A, on tenant A's site."""
    from kenshin.server.security import CredentialBox

    with engine.begin() as conn:
        return registry.add_meter(
            conn,
            world.tenant_a,
            CredentialBox(KEY),
            "system",
            site_id=fleet["site"].id,
            link="udp",
            gateway_id=fleet["gateway"].id,
            udp_host="127.0.1.1",
        )


@contextmanager
def serving(app) -> Iterator[str]:
    """`app` under uvicorn in a thread, on a free port of the loopback; its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))  # port 0: free, and no race for it
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
