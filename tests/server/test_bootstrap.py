"""The bootstrap functions the demo, the CLI and the tests build on."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from kenshin.server import schema as s
from kenshin.server.bootstrap import AlreadyExists, create_tenant, create_user, ensure_admin
from kenshin.server.db import make_engine


@pytest.fixture
def db(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_ensure_admin_is_idempotent(db: Engine) -> None:
    user_id, created = ensure_admin(db, "Root@Example.jp", "first password")
    assert created
    assert ensure_admin(db, "root@example.jp", "first password") == (user_id, False)
    assert ensure_admin(db, "root@example.jp", "other password") == (user_id, False)
    assert _count(db, s.users) == 1


def test_ensure_admin_never_promotes_a_tenant_user(db: Engine) -> None:
    tenant = create_tenant(db, "T", "aggregator")
    create_user(db, tenant, "ops@t.jp", "a password", "operator")
    with pytest.raises(ValueError, match="tenant"):
        ensure_admin(db, "ops@t.jp", "a password")


def test_create_tenant_is_all_or_nothing(db: Engine) -> None:
    create_tenant(db, "T", admin_email="admin@t.jp", admin_password="a password")
    with pytest.raises(AlreadyExists):
        create_tenant(db, "T")
    assert _count(db, s.tenants) == 1 and _count(db, s.users) == 1
    # An address may have an account in each tenant (unique per tenant, issue 16).
    create_tenant(db, "U", admin_email="admin@t.jp", admin_password="a password")
    assert _count(db, s.tenants) == 2 and _count(db, s.users) == 2
    with pytest.raises(ValueError):
        create_tenant(db, "V", "bank")
