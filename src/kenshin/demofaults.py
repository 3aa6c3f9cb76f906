"""The faults in the demo's month, so the Alerts page and the events have real entries
(issue 17 item 3): a home's power cut for six hours (its meter off: nothing recorded, no
refill can fetch the half hours, the missing-slots report counts them), a faulty appliance
drawing 12.5 kW more for an evening hour and a half (slots no contract allows), and a
gateway offline for three hours.

The meters' faults are in the simulators (`SimulatedMeter.inject`), so their data flows
through the real backfill and ingest. The alert engine only looks at the present, and
these lie in the backfilled past: once the history is in, the demo records what the
engine would have raised at the time (an alert opened when the fault had lasted the
rule's span, resolved when it ended, with their events), and the gateway's outage as the
state events the server records. Times are fixed to the demo's anchor, so a second run
in the same folder shows the same month; each is written once (a later run adds only
what an earlier one could not, its history not in yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import Engine, func, select, update

from kenshin.jst import JST
from kenshin.server import schema as s
from kenshin.server.alerts.engine import alert_opened_at, open_alert, transition
from kenshin.server.events import record_event

__all__ = ["FAULTS", "Fault", "inject", "record"]


@dataclass(frozen=True)
class Fault:
    home: str  # Home.name
    kind: str  # power_cut | surge | offline
    days_before: int  # before the anchor's JST date
    start: time
    hours: float
    extra_w: int = 0

    def window(self, anchor: datetime) -> tuple[datetime, datetime]:
        day = anchor.astimezone(JST).date() - timedelta(days=self.days_before)
        start = datetime.combine(day, self.start, JST)
        return start, start + timedelta(hours=self.hours)


FAULTS = (
    Fault("home-1", "power_cut", 20, time(10, 0), 6),
    # Past what the contract allows: the impossible_value rule's "slot too big" (> 6 kWh).
    Fault("home-2", "surge", 12, time(18, 0), 1.5, extra_w=12_500),
    Fault("home-3", "offline", 6, time(2, 0), 3),
)
NO_DATA_SLOTS = 4  # the no_data rule's default span
RULE_SPAN = {"power_cut": timedelta(minutes=30 * NO_DATA_SLOTS), "surge": timedelta(minutes=30)}


def inject(homes: list, anchor: datetime) -> None:
    """Put the meters' faults into their simulators (before they are first read)."""
    by_name = {home.name: home for home in homes}
    for fault in FAULTS:
        home = by_name.get(fault.home)
        if home is None:
            continue
        start, end = fault.window(anchor)
        if fault.kind == "power_cut":
            home.meter.inject(outages=((start, end),))
        elif fault.kind == "surge":
            home.meter.inject(surges=((start, end, fault.extra_w),))


def _ids(conn, serial: str) -> tuple[int, int, int] | None:
    g, m = s.gateways.c, s.meters.c
    return conn.execute(
        select(g.tenant_id, g.id, m.id)
        .join(s.meters, m.gateway_id == g.id)
        .where(g.serial == serial)
        .limit(1)
    ).one_or_none()


def record(engine: Engine, homes: list, anchor: datetime, history_days: int) -> int:
    """The alerts and events of the month's faults; how many alerts were written."""
    by_name = {home.name: home for home in homes}
    written = 0
    with engine.begin() as conn:
        # The meters were installed before the month the gateways backfilled.
        installed = anchor - timedelta(days=history_days + 1)
        conn.execute(
            update(s.meters).where(s.meters.c.created_at > installed).values(created_at=installed)
        )
        for fault in FAULTS:
            home = by_name.get(fault.home)
            ids = home and _ids(conn, home.identity.serial)
            if not ids:
                continue
            tenant_id, gateway_id, meter_id = ids
            start, end = fault.window(anchor)
            if fault.kind == "offline":
                ev = s.events.c
                done = conn.execute(
                    select(ev.id).where(
                        ev.gateway_id == gateway_id,
                        ev.code == "gateway_lost_contact",
                        ev.at == start,
                    )
                ).first()
                if done:
                    continue
                for code, state, at, severity, reason in (
                    ("gateway_lost_contact", "working", start, "warning", "silent"),
                    ("gateway_working", "lost_contact", end, "info", "heard from it"),
                ):
                    record_event(
                        conn,
                        tenant_id=tenant_id,
                        gateway_id=gateway_id,
                        code=code,
                        severity=severity,
                        detail={"from": state, "reason": reason},
                        at=at,
                    )
                continue
            if fault.kind == "power_cut":
                rule, severity = "no_data", "warning"
                detail = {"slots": NO_DATA_SLOTS, "since": start.isoformat()}
            else:
                rule, severity = "impossible_value", "error"
                e = s.slot_energy.c
                biggest = conn.execute(
                    select(func.max(e.wh)).where(
                        e.meter_id == meter_id,
                        e.direction == 0,
                        e.slot_start >= start,
                        e.slot_start < end,
                    )
                ).scalar()
                if biggest is None or biggest <= 6_000:  # not in the history (yet)
                    continue
                problem = f"slot of {biggest} Wh: more than 12000 W could give"
                detail = {"problems": [problem]}
            opened = start + RULE_SPAN[fault.kind]
            subject = f"meter:{meter_id}"
            if alert_opened_at(conn, tenant_id, rule, subject, opened):
                continue
            alert = open_alert(
                conn,
                tenant_id,
                rule,
                subject,
                meter_id=meter_id,
                gateway_id=gateway_id,
                severity=severity,
                detail=detail,
                opened_at=opened,
                last_seen_at=end,
            )
            transition(conn, alert.id, "resolved", "system", end + timedelta(minutes=30))
            written += 1
    return written
