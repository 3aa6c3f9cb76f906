"""The dr job on SQLite and PostgreSQL: events moved by time, results made final with the
exact numbers of the slot data written here (an opted-out home apart, never a failure),
the `dr_results_final` event for webhooks; and the imbalance rules, proposing or raising
an event from the Demand page's projection, once per run."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import insert, select

from kenshin.jst import JST, SLOT
from kenshin.server import schema as s
from kenshin.server.dr import rules, service
from kenshin.server.dr.job import run_dr
from kenshin.server.dr.queries import get_event, participations
from kenshin.server.dr.results import FINAL_AFTER

from ..conftest import subscribe_webhook
from .homes import BEFORE, EVENT_DAY, SLOTS, make_homes, store_days

NORMAL, DURING = (100, 200, 80), (60, 150, 80)  # Wh a slot: like days, event slots
END = SLOTS[-1] + SLOT


@pytest.fixture
def event(engine, world):
    """Three homes of tenant A with 21 days of data but the event's last slot; the third
    opts out. Returns (event id, homes)."""
    homes = make_homes(engine, world.tenant_a, 3, "RA")
    for home, normal, during in zip(homes, NORMAL, DURING, strict=True):
        store_days(engine, home.meter_id, normal, during, skip=[SLOTS[-1]])
    with engine.begin() as conn:
        event_id = service.create_event(
            conn, world.tenant_a, name="節電", start=SLOTS[0], end=END, actor="user:1",
            targets_w=[500] * 4, now=BEFORE,
        )  # fmt: skip
        part = participations(conn, event_id)[2]
        assert service.opt_out(conn, part, get_event(conn, world.tenant_a, event_id),
                               via="link", now=BEFORE)  # fmt: skip
    return event_id, homes


def _event(engine, tenant_id, event_id):
    with engine.connect() as conn:
        return get_event(conn, tenant_id, event_id)


def test_the_job_makes_results_final_once_every_slot_is_in(engine, world, event):
    event_id, homes = event
    subscribe_webhook(engine, world.tenant_a, ["event"])
    assert run_dr(engine, SLOTS[0]).moved == {"active": [event_id]}
    assert run_dr(engine, END).moved == {"ended": [event_id]}
    assert run_dr(engine, END + timedelta(hours=1)).final == []  # the last slot is missing
    assert _event(engine, world.tenant_a, event_id).state == "ended"

    with engine.begin() as conn:  # the last slot arrives
        conn.execute(
            insert(s.slot_energy),
            [{"meter_id": h.meter_id, "slot_start": SLOTS[-1], "direction": 0,
              "status": "measured", "milliwatt_hours": wh * 1000, "wh": wh}
             for h, wh in zip(homes, DURING, strict=True)],
        )  # fmt: skip
    assert run_dr(engine, END + timedelta(hours=2)).final == [event_id]
    row = _event(engine, world.tenant_a, event_id)
    assert row.state == "final"
    totals = row.results["totals"]
    # identical like days: each home's baseline is its normal slot, no same-day adjustment
    taking_part = range(2)
    assert totals == {
        "baseline_wh": 4 * sum(NORMAL[i] for i in taking_part),
        "actual_wh": 4 * sum(DURING[i] for i in taking_part),
        "reduction_wh": 4 * sum(NORMAL[i] - DURING[i] for i in taking_part),  # 4 x 90 = 360
        "homes_measured": 2, "homes_missing": 0, "homes_opted_out": 1,
        "opted_out_reduction_wh": 0,
    }  # fmt: skip
    assert [h["status"] for h in row.results["homes"]] == ["measured", "measured", "opted_out"]
    assert [slot["reduction_wh"] for slot in row.results["slots"]] == [90] * 4
    assert row.results["slots"][0]["start"] == SLOTS[0].isoformat()
    assert row.results["slots"][0]["target_w"] == 500
    with engine.connect() as conn:
        final = conn.execute(select(s.events).where(s.events.c.code == "dr_results_final")).one()
        queued = conn.execute(select(s.outbox.c.body).where(s.outbox.c.kind == "event")).all()
    assert final.detail["reduction_wh"] == 360 and final.detail["dr_event_id"] == event_id
    assert [b.body["code"] for b in queued] == ["dr_results_final"]
    assert run_dr(engine, END + timedelta(hours=3)).final == []  # once


def test_after_two_days_results_are_final_with_what_there_is(engine, world, event):
    event_id, _ = event
    run_dr(engine, END)
    assert run_dr(engine, END + FINAL_AFTER - timedelta(minutes=1)).final == []
    assert run_dr(engine, END + FINAL_AFTER).final == [event_id]
    results = _event(engine, world.tenant_a, event_id).results
    assert results["totals"]["homes_missing"] == 2 and results["totals"]["reduction_wh"] == 0
    assert [h["status"] for h in results["homes"]] == ["missing", "missing", "opted_out"]


def test_an_unconfirmed_proposal_lapses_and_a_cancelled_event_is_never_final(engine, world, event):
    event_id, _ = event
    with engine.begin() as conn:
        proposal = service.create_event(
            conn, world.tenant_a, name="p", start=SLOTS[0], end=END, actor="t",
            shed_level=1, proposed=True, now=BEFORE,
        )  # fmt: skip
        service.cancel(conn, world.tenant_a, event_id, "user:1", BEFORE)
        with pytest.raises(service.DrConflict):
            service.cancel(conn, world.tenant_a, event_id, "user:1", BEFORE)
    assert run_dr(engine, SLOTS[0]).moved == {"cancelled": [proposal]}
    assert run_dr(engine, END + FINAL_AFTER).final == []


# -- imbalance rules ----------------------------------------------------------------------

NOW = datetime.combine(EVENT_DAY, time(12), JST)


def _projection(engine, tenant_id, over_w: dict[int, int]) -> None:
    """A plan of 1,000 Wh every slot of the day, and a forecast `over_w` W above it in
    the slots given (their number in the day), at the plan elsewhere."""
    start = datetime.combine(EVENT_DAY, time(0), JST)
    with engine.begin() as conn:
        conn.execute(insert(s.procurement_plan), [
            {"tenant_id": tenant_id, "slot_start": start + i * SLOT, "wh": 1000}
            for i in range(48)
        ])  # fmt: skip
        conn.execute(insert(s.tenant_forecast), [
            {"tenant_id": tenant_id, "slot_start": start + i * SLOT, "direction": 0,
             "low_wh": 900, "mid_wh": 1000 + over_w.get(i, 0) // 2, "high_wh": 1200}
            for i in range(48)
        ])  # fmt: skip


@pytest.mark.parametrize("auto", [False, True])
def test_a_rule_proposes_or_raises_an_event_once(engine, world, auto):
    homes = make_homes(engine, world.tenant_a, 1, "IA")
    _projection(engine, world.tenant_a, {34: 600, 35: 700, 36: 400, 38: 900, 20: 5000})
    with engine.begin() as conn:
        rule_id = rules.add_rule(
            conn, world.tenant_a, name="夕方", threshold_w=500, slots=range(34, 40),
            target_w=300, auto=auto, actor="user:1",
        )  # fmt: skip
    raised = run_dr(engine, NOW).raised
    assert len(raised) == 2  # 17:00-18:00 (34, 35) and 19:00-19:30 (38); 20: not the rule's
    with engine.connect() as conn:
        made = [get_event(conn, world.tenant_a, i) for i in raised]
        parts = participations(conn, raised[0])
    assert [(e.start_at, e.end_at, e.targets_w) for e in made] == [
        (SLOTS[0], SLOTS[2], [300, 300]), (SLOTS[0] + 4 * SLOT, SLOTS[0] + 5 * SLOT, [300])
    ]  # fmt: skip
    assert {(e.state, e.rule_id) for e in made} == {("scheduled" if auto else "proposed", rule_id)}
    assert [p.site_id for p in parts] == [homes[0].site_id]
    assert run_dr(engine, NOW + timedelta(minutes=1)).raised == []  # once a run


def test_the_dr_job_is_one_of_the_servers_jobs(settings):
    from kenshin.server.jobs import server_jobs
    from kenshin.server.security import CredentialBox

    assert "dr" in [job.name for job in server_jobs(settings, CredentialBox(b"k" * 32))]
