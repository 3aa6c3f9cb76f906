"""What the database itself enforces, on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import Date, DateTime, Engine, cast, func, insert, literal, make_url, select, text
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from kenshin.server import schema as s
from kenshin.server.db import make_engine

JST = timezone(timedelta(hours=9))


@pytest.fixture
def db(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _tenant(conn, name: str) -> int:
    return conn.execute(insert(s.tenants).values(name=name, kind="retailer")).inserted_primary_key[
        0
    ]


def _site(conn, tenant_id: int, code: str = "pss00000001", customer: str = "c1") -> int:
    return conn.execute(
        insert(s.sites).values(tenant_id=tenant_id, customer_id=customer, service_code=code)
    ).inserted_primary_key[0]


def _fails(engine: Engine, statement) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(statement)
    except (IntegrityError, DataError):  # DataError: PostgreSQL's "value too long"
        return True
    return False


def test_foreign_keys_are_enforced(db: Engine) -> None:
    assert _fails(
        db, insert(s.sites).values(tenant_id=999, customer_id="x", service_code="pss00000001")
    )


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("pss12345678", True),
        ("PSS12345678", False),
        ("pss1234567", False),
        ("pss123456789", False),
        ("pss1234567x", False),
        ("xyz12345678", False),
    ],
)
def test_service_code_format(db: Engine, code: str, ok: bool) -> None:
    with db.begin() as conn:
        tenant = _tenant(conn, "T")
    statement = insert(s.sites).values(tenant_id=tenant, customer_id="c", service_code=code)
    assert _fails(db, statement) is not ok


def test_a_meter_cannot_sit_at_another_tenants_site(db: Engine) -> None:
    with db.begin() as conn:
        a, b = _tenant(conn, "A"), _tenant(conn, "B")
        site_b = _site(conn, b)
    meter = {"tenant_id": a, "site_id": site_b, "link": "wisun"}
    assert _fails(db, insert(s.meters).values(**meter))
    with db.begin() as conn:
        site_a = _site(conn, a)
        conn.execute(insert(s.meters).values(**{**meter, "site_id": site_a}))


def test_a_gateway_must_be_the_meters_tenants(db: Engine) -> None:
    with db.begin() as conn:
        a, b = _tenant(conn, "A"), _tenant(conn, "B")
        site_a = _site(conn, a)
        gateway_b = conn.execute(
            insert(s.gateways).values(
                serial="GW1", model="m", public_key=bytes(32), tenant_id=b, state="never_seen"
            )
        ).inserted_primary_key[0]
    statement = insert(s.meters).values(
        tenant_id=a, site_id=site_a, gateway_id=gateway_b, link="wisun"
    )
    assert _fails(db, statement)


def test_gateway_rules(db: Engine) -> None:
    base = {"serial": "GW1", "model": "m", "public_key": bytes(32)}
    assert _fails(db, insert(s.gateways).values(**{**base, "public_key": bytes(31)}))
    assert _fails(db, insert(s.gateways).values(**{**base, "state": "working"}))  # no tenant
    assert _fails(db, insert(s.gateways).values(**{**base, "state": "asleep"}))
    with db.begin() as conn:
        conn.execute(insert(s.gateways).values(**base))
        row = conn.execute(select(s.gateways)).one()
    assert row.state == "unclaimed" and row.state_since.tzinfo is UTC
    assert _fails(db, insert(s.gateways).values(**base))  # serial is unique


def test_tenant_default_settings_have_unique_versions(db: Engine) -> None:
    with db.begin() as conn:
        tenant = _tenant(conn, "T")
        conn.execute(insert(s.settings).values(tenant_id=tenant, version=1, values={"poll_s": 60}))
    statement = insert(s.settings).values(tenant_id=tenant, version=1, values={})
    assert _fails(db, statement)
    with db.begin() as conn:
        stored = conn.execute(select(s.settings.c["values"])).scalar_one()
    assert stored == {"poll_s": 60}


def test_readings_have_one_row_per_meter_and_time(db: Engine) -> None:
    with db.begin() as conn:
        tenant = _tenant(conn, "T")
        site = _site(conn, tenant)
        meter = conn.execute(
            insert(s.meters).values(tenant_id=tenant, site_id=site, link="udp", udp_host="h")
        ).inserted_primary_key[0]
    at = datetime(2025, 1, 1, 0, 30, tzinfo=JST)
    row = {"meter_id": meter, "at": at, "power_w": 500, "current_r_da": 50}
    with db.begin() as conn:
        conn.execute(insert(s.readings_instant).values(**row))
    assert _fails(db, insert(s.readings_instant).values(**{**row, "at": at.astimezone(UTC)}))
    slot = {"meter_id": meter, "slot_start": at, "raw": 1, "source": "measured"}
    with db.begin() as conn:
        conn.execute(insert(s.readings_fixed).values(**slot, direction=0))
        conn.execute(insert(s.readings_fixed).values(**slot, direction=1))
    assert _fails(db, insert(s.readings_fixed).values(**slot, direction=2))


def test_timestamps_are_utc_and_compare_as_instants(db: Engine) -> None:
    # The same instants written in three zones; order and comparison must follow time.
    instants = [
        datetime(2025, 3, 1, 8, 59, tzinfo=JST),  # 23:59 UTC on Feb 28
        datetime(2025, 2, 28, 23, 59, 30, tzinfo=UTC),
        datetime(2025, 2, 28, 19, 0, 1, 250, tzinfo=timezone(timedelta(hours=-5))),  # 00:00:01
    ]
    with db.begin() as conn:
        for i, at in enumerate(instants):
            conn.execute(insert(s.events).values(code=f"e{i}", severity="info", at=at))
    with db.connect() as conn:
        rows = conn.execute(select(s.events.c.code, s.events.c.at).order_by(s.events.c.at)).all()
        later = (
            conn.execute(
                select(s.events.c.code).where(s.events.c.at > datetime(2025, 3, 1, tzinfo=UTC))
            )
            .scalars()
            .all()
        )
        newest = conn.execute(select(func.max(s.events.c.at))).scalar_one()
    assert [r.code for r in rows] == ["e0", "e1", "e2"]
    assert [r.at for r in rows] == sorted(instants)
    assert all(r.at.tzinfo is UTC for r in rows)
    assert later == ["e2"]
    assert newest == instants[2]  # max() keeps the type: an aware datetime on both


def test_postgresql_sessions_are_utc_whatever_the_servers_zone(
    backend: str, empty_database_url: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no session zone")
    name = make_url(empty_database_url).database
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as conn:  # a server set up in Japan, as many are
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET TimeZone = 'Asia/Tokyo'"))
        engine.dispose()  # the next sessions start with the database's default
        instant = datetime(2025, 2, 28, 23, 59, 30, tzinfo=UTC)  # 1 March in Tokyo
        with engine.connect() as conn:
            zone = conn.execute(text("SHOW TimeZone")).scalar_one()
            day = conn.execute(select(cast(literal(instant), Date))).scalar_one()
            back = conn.execute(select(literal(instant, DateTime(timezone=True)))).scalar_one()
    finally:
        engine.dispose()
    assert (zone, day) == ("UTC", date(2025, 2, 28))  # SQL's days are UTC's, as the code's
    assert back.tzinfo is UTC  # the fixed zone: no zoneinfo arithmetic per row read


def test_naive_timestamps_are_refused(db: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), db.begin() as conn:
        conn.execute(insert(s.events).values(code="x", severity="info", at=datetime(2025, 1, 1)))
