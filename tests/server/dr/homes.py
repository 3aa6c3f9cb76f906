"""Homes for the dr room's tests: a tenant's sites, each with a claimed gateway and a UDP
meter behind it, and slot energy written straight into the metering room's table (what
the ingest would have stored)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import Engine, insert

from kenshin.jst import JST, SLOT
from kenshin.server import schema as s
from kenshin.server.devices import registry
from kenshin.server.security import CredentialBox

from ..rollout_fleet import KEY, claimed_gateways

EVENT_DAY = date(2024, 7, 10)  # a Wednesday
SLOTS = [datetime.combine(EVENT_DAY, time(17), JST) + i * SLOT for i in range(4)]
BEFORE = datetime.combine(EVENT_DAY - timedelta(days=1), time(12), JST)  # "now" at creation


@dataclass(frozen=True)
class Home:
    site_id: int
    gateway_id: int
    serial: str
    meter_id: int


def make_homes(engine: Engine, tenant_id: int, n: int, prefix: str) -> list[Home]:
    gateways = claimed_gateways(engine, tenant_id, n, prefix)
    homes = []
    with engine.begin() as conn:
        for i, (gateway_id, serial) in enumerate(sorted(gateways.items())):
            site = registry.add_site(
                conn, tenant_id, "system", customer_id=f"{prefix}{i}",
                service_code=f"pss{tenant_id}{i:07}",
            )  # fmt: skip
            meter = registry.add_meter(
                conn, tenant_id, CredentialBox(KEY), "system", site_id=site.id, link="udp",
                gateway_id=gateway_id, udp_host=f"127.0.{tenant_id}.{i + 1}",
            )  # fmt: skip
            homes.append(Home(site.id, gateway_id, serial, meter.id))
    return homes


def store_days(
    engine: Engine, meter_id: int, normal: int, during: int, *, days: int = 21,
    event_slots: Sequence[datetime] = SLOTS, skip: Sequence[datetime] = (),
) -> None:  # fmt: skip
    """`days` days of `normal` Wh a slot up to the event day, `during` in the event's
    slots; none in `skip`."""
    rows = []
    for back in range(days):
        day = EVENT_DAY - timedelta(days=back)
        for i in range(48):
            slot = datetime.combine(day, time(0), JST) + i * SLOT
            if slot in skip:
                continue
            wh = during if slot in event_slots else normal
            rows.append(
                {"meter_id": meter_id, "slot_start": slot, "direction": 0,
                 "status": "measured", "milliwatt_hours": wh * 1000, "wh": wh}
            )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(s.slot_energy), rows)
