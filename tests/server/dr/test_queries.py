"""The dr room's read (kenshin.server.dr.queries) on SQLite and PostgreSQL: a tenant's homes'
energy summed over each home's meters through the doors, and an event's reduction."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import delete, insert

from kenshin.jst import JST, SLOT
from kenshin.server import schema as s
from kenshin.server.devices import registry
from kenshin.server.dr.queries import home_energy, tenant_event_reduction
from kenshin.server.dr.reduction import Missing
from kenshin.server.security import CredentialBox

from ..conftest import KEY, udp_meter

EVENT_DAY = date(2024, 7, 10)  # a Wednesday
SLOTS = [datetime.combine(EVENT_DAY, time(13), JST) + i * SLOT for i in range(4)]


def _store(engine, meter_id: int, normal: int, during: int) -> None:
    """21 days of `normal` Wh a slot to the event day, `during` in its event slots."""
    rows = []
    for back in range(21):
        day = EVENT_DAY - timedelta(days=back)
        for i in range(48):
            slot = datetime.combine(day, time(0), JST) + i * SLOT
            wh = during if slot in SLOTS else normal
            rows.append(
                {"meter_id": meter_id, "slot_start": slot, "direction": 0,
                 "status": "measured", "milliwatt_hours": wh * 1000, "wh": wh}
            )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(s.slot_energy), rows)


@pytest.fixture
def homes(engine, world, fleet):
    """Tenant A: home 1 with one meter (100 Wh, 60 during the event), home 2 with two (50
    and 50, 30 and 30 during it); tenant B: a home of its own with the same days."""
    one = udp_meter(engine, world, fleet)
    with engine.begin() as conn:
        site_b = registry.add_site(
            conn, world.tenant_a, "system", customer_id="C2", service_code="pss00000002"
        )
        two = [
            registry.add_meter(
                conn,
                world.tenant_a,
                CredentialBox(KEY),
                "system",
                site_id=site_b.id,
                link="udp",
                udp_host=f"127.0.2.{n}",
            )
            for n in (1, 2)
        ]
        site_other = registry.add_site(
            conn, world.tenant_b, "system", customer_id="B1", service_code="pss00000003"
        )
        theirs = registry.add_meter(
            conn, world.tenant_b, CredentialBox(KEY), "system", site_id=site_other.id,
            link="udp", udp_host="127.0.3.1",
        )  # fmt: skip
    _store(engine, one.id, 100, 60)
    for meter in two:
        _store(engine, meter.id, 50, 30)
    _store(engine, theirs.id, 100, 0)
    return {"one": fleet["site"].id, "two": site_b.id, "meter": two[1].id}


def test_a_tenants_homes_and_their_reduction(engine, world, homes):
    with engine.connect() as conn:
        energy = home_energy(conn, world.tenant_a, SLOTS[0], SLOTS[-1] + SLOT)
        assert energy == {
            homes["one"]: dict.fromkeys(SLOTS, 60),
            homes["two"]: dict.fromkeys(SLOTS, 60),
        }
        e = tenant_event_reduction(conn, world.tenant_a, SLOTS)
    assert [h.home for h in e.homes] == [homes["one"], homes["two"]]
    assert [h.reduction_wh for h in e.homes] == [160, 160]  # (100 - 60) x 4 slots
    assert e.reduction_wh == 320
    assert e.homes[0].baseline.like_days == tuple(date(2024, 7, n) for n in (9, 8, 5, 4))
    assert e.homes[0].baseline.adjustment is not None
    assert e.homes[0].baseline.adjustment.per_slot == 0


def test_a_meter_missing_a_slot_makes_its_home_missing(engine, world, homes):
    with engine.begin() as conn:
        conn.execute(
            delete(s.slot_energy).where(
                s.slot_energy.c.meter_id == homes["meter"], s.slot_energy.c.slot_start == SLOTS[2]
            )
        )
    with engine.connect() as conn:
        e = tenant_event_reduction(conn, world.tenant_a, SLOTS, opted_out={homes["one"]})
    assert e.homes == ()
    assert e.missing == (
        Missing(homes["two"], "missing_actual", "1 of the event's slots", (SLOTS[2],)),
    )
    assert [h.home for h in e.opted_out] == [homes["one"]]
    assert (e.reduction_wh, e.opted_out_reduction_wh) == (0, 160)
