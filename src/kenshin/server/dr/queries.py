"""The dr room's reads: a tenant's homes' slot energy, through the devices room's door (which
meters are the tenant's, on which site) and the metering room's (`meter_slots`), never
their tables; and an event's measured reduction over those homes.

A home is a site; its energy in a slot is the sum of the bought (direction 0) Wh of all its
meters, present only when every one of them has a value there: a site with a meter
missing a slot has no value in that slot rather than a partial one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta

import jpholiday
from sqlalchemy import Connection, select

from kenshin.jst import JST, SLOT, jst_midnight
from kenshin.server.devices import queries as devices
from kenshin.server.metering import queries as metering

from .baseline import STANDARD, HolidayCalendar, Rules, compute_baseline
from .reduction import EventReduction, event_reduction

__all__ = ["home_energy", "tenant_event_reduction"]

BOUGHT = 0


def home_energy(
    conn: Connection, tenant_id: int, lo: datetime, hi: datetime
) -> dict[int, dict[datetime, int]]:
    """site id -> slot start -> Wh of the tenant's homes in [lo, hi) (see the module)."""
    meters = devices.tenant_meters(tenant_id)
    sites = {
        row.id: row.site_id
        for row in conn.execute(select(meters.c.id, meters.c.site_id))
        if row.site_id is not None
    }
    per_site = defaultdict(set)
    for meter, site in sites.items():
        per_site[site].add(meter)
    slots = metering.meter_slots(BOUGHT, lo, hi).subquery()
    rows = conn.execute(
        select(slots.c.meter_id, slots.c.slot_start, slots.c.wh).join(
            meters, meters.c.id == slots.c.meter_id
        )
    )
    sums: dict[int, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    seen: dict[tuple[int, datetime], int] = defaultdict(int)
    for meter_id, slot_start, wh in rows:
        site = sites.get(meter_id)
        if site is None:
            continue
        sums[site][slot_start] += wh
        seen[site, slot_start] += 1
    return {
        site: {s: wh for s, wh in sums[site].items() if seen[site, s] == len(meter_ids)}
        for site, meter_ids in per_site.items()
    }


def tenant_event_reduction(
    conn: Connection,
    tenant_id: int,
    event_slots: Sequence[datetime],
    *,
    dr_days: Collection[date] = (),
    opted_out: Collection[int] = (),
    is_holiday: HolidayCalendar = jpholiday.is_holiday,
    rules: Rules = STANDARD,
) -> EventReduction:
    """The event's reduction over every home (site with a meter) of the tenant, each
    against its own standard baseline; `dr_days` are the tenant's earlier DR days."""
    slots = list(event_slots)
    first_day = slots[0].astimezone(JST).date() - timedelta(days=rules.lookback_days + 1)
    energy = home_energy(conn, tenant_id, jst_midnight(first_day), slots[-1] + SLOT)
    homes = [
        (
            site,
            compute_baseline(
                energy[site], slots, dr_days=dr_days, is_holiday=is_holiday, rules=rules
            ),
            energy[site],
        )
        for site in sorted(energy)
    ]
    return event_reduction(slots, homes, opted_out=opted_out)
