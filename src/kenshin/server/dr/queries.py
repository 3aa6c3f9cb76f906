"""The dr room's reads: its events, their homes and rules (its own tables); a tenant's
homes and their slot energy, through the devices room's door (which meters are the
tenant's, on which site, behind which gateway) and the metering room's (`meter_slots`),
never their tables; and an event's measured reduction over those homes.

A home is a site; its energy in a slot is the sum of the bought (direction 0) Wh of all its
meters, present only when every one of them has a value there: a site with a meter
missing a slot has no value in that slot rather than a partial one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta

import jpholiday
from sqlalchemy import Connection, Row, func, select

from kenshin.jst import JST, SLOT, jst_midnight
from kenshin.server import listing
from kenshin.server.devices import queries as devices
from kenshin.server.metering import queries as metering

from . import tables as t
from .baseline import STANDARD, Baseline, HolidayCalendar, NoBaseline, Rules, compute_baseline
from .reduction import EventReduction, event_reduction
from .tables import PARTICIPATION_STATES

__all__ = [
    "dr_days",
    "event_baselines",
    "event_page",
    "event_slots",
    "gateway_serials",
    "get_event",
    "home_baselines",
    "home_energy",
    "participations",
    "rules_of",
    "state_counts",
    "tenant_event_reduction",
    "tenant_homes",
]

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


def home_baselines(
    conn: Connection,
    tenant_id: int,
    event_slots: Sequence[datetime],
    *,
    homes: Collection[int] | None = None,
    dr_days: Collection[date] = (),
    is_holiday: HolidayCalendar = jpholiday.is_holiday,
    rules: Rules = STANDARD,
) -> list[tuple[int, Baseline | NoBaseline, dict[datetime, int]]]:
    """Each home's (of `homes`, default every one with a meter) baseline for the event
    and its energy up to the event's end, by site id."""
    slots = list(event_slots)
    first_day = slots[0].astimezone(JST).date() - timedelta(days=rules.lookback_days + 1)
    energy = home_energy(conn, tenant_id, jst_midnight(first_day), slots[-1] + SLOT)
    chosen = sorted(energy if homes is None else set(homes))
    return [
        (
            site,
            compute_baseline(
                energy.get(site, {}), slots, dr_days=dr_days, is_holiday=is_holiday, rules=rules
            ),
            energy.get(site, {}),
        )
        for site in chosen
    ]


def tenant_event_reduction(
    conn: Connection,
    tenant_id: int,
    event_slots: Sequence[datetime],
    *,
    homes: Collection[int] | None = None,
    dr_days: Collection[date] = (),
    opted_out: Collection[int] = (),
    is_holiday: HolidayCalendar = jpholiday.is_holiday,
    rules: Rules = STANDARD,
) -> EventReduction:
    """The event's reduction over the tenant's `homes` (default: every home, a site with a
    meter), each against its own standard baseline; `dr_days` are the tenant's earlier DR
    days."""
    measured = home_baselines(
        conn, tenant_id, event_slots, homes=homes, dr_days=dr_days, is_holiday=is_holiday,
        rules=rules,
    )  # fmt: skip
    return event_reduction(list(event_slots), measured, opted_out=opted_out)


# -- the room's own tables: events, participations, rules ---------------------------------

LIVE_STATES = ("proposed", "scheduled", "active")  # an event still to happen or under way
OUT_OF_IT = ("opted_out", "refused", "no_devices")  # homes that will not act


def tenant_homes(conn: Connection, tenant_id: int) -> dict[int, int]:
    """The tenant's homes that can take part: site id -> the gateway that acts for it (of
    its meters' gateways, the lowest id), through the devices room's door."""
    meters = devices.tenant_meters(tenant_id)
    rows = conn.execute(
        select(meters.c.site_id, func.min(meters.c.gateway_id))
        .where(meters.c.site_id.is_not(None), meters.c.gateway_id.is_not(None))
        .group_by(meters.c.site_id)
    )
    return {site: gateway for site, gateway in rows}


def gateway_serials(conn: Connection, tenant_id: int) -> dict[int, str]:
    return {g.id: g.serial for g in devices.tenant_gateways(conn, tenant_id)}


def event_page(
    conn: Connection, tenant_id: int, states: Sequence[str] | None, limit: int, cursor: str | None
) -> tuple[Sequence[Row], str | None]:
    """A page of the tenant's events, latest start first (of these states if given)."""
    return listing.tenant_page(conn, t.dr_events, tenant_id, states, "start_at", limit, cursor)


def get_event(conn: Connection, tenant_id: int, event_id: int) -> Row | None:
    """The tenant's event (None: no such event, or another tenant's)."""
    e = t.dr_events.c
    return conn.execute(
        select(t.dr_events).where(e.id == event_id, e.tenant_id == tenant_id)
    ).first()


def participations(conn: Connection, event_id: int) -> list[Row]:
    """The event's homes, by site id."""
    p = t.dr_participations.c
    return conn.execute(
        select(t.dr_participations).where(p.event_id == event_id).order_by(p.site_id)
    ).all()


def state_counts(conn: Connection, event_id: int) -> dict[str, int]:
    """How many of the event's homes are in each state (every state listed, 0 or more)."""
    p = t.dr_participations.c
    counted = dict.fromkeys(PARTICIPATION_STATES, 0)
    rows = conn.execute(
        select(p.state, func.count()).where(p.event_id == event_id).group_by(p.state)
    )
    counted.update({state: n for state, n in rows})
    return counted


def event_slots(event: Row) -> list[datetime]:
    """The slot starts of the event, in order (JST)."""
    n = (event.end_at - event.start_at) // SLOT
    return [(event.start_at + i * SLOT).astimezone(JST) for i in range(n)]


def dr_days(conn: Connection, tenant_id: int, event: Row) -> set[date]:
    """The JST days of the tenant's other events that took (or are taking) place: the
    baseline leaves them out of its like days (docs/dr.md)."""
    e = t.dr_events.c
    starts = conn.execute(
        select(e.start_at).where(
            e.tenant_id == tenant_id,
            e.id != event.id,
            e.state.in_(("scheduled", "active", "ended", "final")),
            e.start_at < event.start_at,
        )
    ).scalars()
    return {at.astimezone(JST).date() for at in starts}


def event_baselines(
    conn: Connection, event: Row, homes: Collection[int]
) -> list[tuple[int, Baseline | NoBaseline, dict[datetime, int]]]:
    """Each of `homes`' baseline for the event (its other DR days left out) and energy."""
    return home_baselines(
        conn, event.tenant_id, event_slots(event), homes=homes,
        dr_days=dr_days(conn, event.tenant_id, event),
    )  # fmt: skip


def rules_of(conn: Connection, tenant_id: int, *, enabled: bool | None = None) -> list[Row]:
    r = t.dr_rules.c
    query = select(t.dr_rules).where(r.tenant_id == tenant_id).order_by(r.id)
    if enabled is not None:
        query = query.where(r.enabled == enabled)
    return conn.execute(query).all()
