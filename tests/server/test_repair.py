"""Server-driven repair: which half hours the server asks again, how often, and when it
gives up (metering/repair.py), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from kenshin.server import schema as s
from kenshin.server.devices import commands
from kenshin.server.metering.repair import RepairPolicy, run_repairs

from .conftest import udp_meter

T0 = datetime(2026, 8, 10, 0, 0, tzinfo=UTC)  # a half hour
POLICY = RepairPolicy(delay_s=3600, horizon_days=2, gateway_every_s=600, fleet_max=10)


def _store(engine, meter_id: int, boundaries: list[datetime]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(s.readings_fixed),
            [
                {"meter_id": meter_id, "slot_start": at, "direction": 0, "raw": 100,
                 "source": "measured", "received_at": at}
                for at in boundaries
            ],
        )  # fmt: skip


def _slots(first: datetime, count: int) -> list[datetime]:
    return [first + timedelta(minutes=30 * i) for i in range(count)]


def _online(engine, gateway_id: int, state: str = "working") -> None:
    with engine.begin() as conn:
        conn.execute(update(s.gateways).where(s.gateways.c.id == gateway_id).values(state=state))


def _backfills(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(s.commands).where(s.commands.c.name == "backfill").order_by(s.commands.c.id)
        ).all()


@pytest.fixture
def meter(engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    _online(engine, fleet["gateway"].id)
    return meter


def test_the_first_hole_is_asked_for_exactly_and_once(engine, meter):
    # 00:00-04:00 stored except 01:00, 01:30 and 02:00; now 05:00, delay 1 h.
    slots = _slots(T0, 9)
    _store(engine, meter.id, [at for i, at in enumerate(slots) if i not in (2, 3, 4)])
    now = T0 + timedelta(hours=5)
    report = run_repairs(engine, now, POLICY)
    assert report.requested == 1
    (command,) = _backfills(engine)
    assert command.args == {
        "from_s": int(slots[2].timestamp()), "to_s": int(slots[4].timestamp())
    }  # fmt: skip
    assert command.created_by == "system:repair"
    with engine.connect() as conn:
        event = conn.execute(select(s.events).where(s.events.c.code == "gap_repair_requested"))
        assert event.one().detail["slots"] == 3
    assert run_repairs(engine, now + timedelta(minutes=30), POLICY).requested == 0  # outstanding


def test_a_hole_younger_than_the_delay_and_the_tail_after_it(engine, meter):
    _store(engine, meter.id, _slots(T0, 4))  # 00:00 .. 01:30
    # At 02:20 nothing is older than the delay past 01:30: no request.
    assert run_repairs(engine, T0 + timedelta(hours=2, minutes=20), POLICY).requested == 0
    # At 03:40 the tail 02:00 .. 02:30 is a gap (02:40 is the limit).
    assert run_repairs(engine, T0 + timedelta(hours=3, minutes=40), POLICY).requested == 1
    (command,) = _backfills(engine)
    assert (command.args["from_s"], command.args["to_s"]) == (
        int((T0 + timedelta(hours=2)).timestamp()),
        int((T0 + timedelta(hours=2, minutes=30)).timestamp()),
    )


def test_answered_then_spaced_then_backed_off_and_reset_when_filled(engine, meter):
    slots = _slots(T0, 9)
    _store(engine, meter.id, [at for i, at in enumerate(slots) if i != 3])
    now = T0 + timedelta(hours=5)
    assert run_repairs(engine, now, POLICY).requested == 1
    (first,) = _backfills(engine)
    with engine.begin() as conn:  # the meter's history did not hold it
        conn.execute(update(s.commands).where(s.commands.c.id == first.id).values(state="done"))
    assert run_repairs(engine, now, POLICY).requested == 0  # settled: spacing starts
    assert run_repairs(engine, now + timedelta(seconds=599), POLICY).requested == 0
    assert run_repairs(engine, now + timedelta(seconds=601), POLICY).requested == 1
    second = _backfills(engine)[-1]
    with engine.begin() as conn:
        conn.execute(update(s.commands).where(s.commands.c.id == second.id).values(state="failed"))
    later = now + timedelta(seconds=601)
    assert run_repairs(engine, later, POLICY).requested == 0
    assert run_repairs(engine, later + timedelta(seconds=1199), POLICY).requested == 0  # 2x
    assert run_repairs(engine, later + timedelta(seconds=1201), POLICY).requested == 1
    third = _backfills(engine)[-1]
    _store(engine, meter.id, [slots[3]])  # filled
    with engine.begin() as conn:
        conn.execute(update(s.commands).where(s.commands.c.id == third.id).values(state="done"))
    run_repairs(engine, later + timedelta(seconds=1300), POLICY)
    with engine.connect() as conn:
        state = conn.execute(select(s.meter_repair)).one()
    assert state.attempts == 0 and state.complete_through == slots[8]


def test_offline_gateways_and_the_fleet_budget(engine, meter, fleet):
    _store(engine, meter.id, [at for i, at in enumerate(_slots(T0, 9)) if i != 3])
    now = T0 + timedelta(hours=5)
    _online(engine, fleet["gateway"].id, "lost_contact")
    assert run_repairs(engine, now, POLICY).requested == 0
    _online(engine, fleet["gateway"].id)
    no_budget = RepairPolicy(**{**POLICY.__dict__, "fleet_max": 0})
    assert run_repairs(engine, now, no_budget).requested == 0
    assert run_repairs(engine, now, POLICY).requested == 1


def test_a_hole_older_than_the_history_is_given_up_with_an_event(engine, meter):
    slots = _slots(T0, 6)
    _store(engine, meter.id, [at for i, at in enumerate(slots) if i != 2])
    now = T0 + timedelta(days=3)  # horizon 2 days: the hole is lost for good
    report = run_repairs(engine, now, POLICY)
    assert (report.requested, report.gave_up) == (0, 1)
    with engine.connect() as conn:
        event = conn.execute(select(s.events).where(s.events.c.code == "gap_repair_gave_up")).one()
    assert event.detail["slots"] == 1 and event.severity == "warning"
    # The tail after the last value (younger than the horizon) is still asked for.
    assert run_repairs(engine, now, POLICY).requested == 1
    assert _backfills(engine)[-1].args["from_s"] >= int((now - timedelta(days=2)).timestamp())


def test_a_command_the_gateway_never_answers_expires_and_is_asked_again(engine, meter):
    _store(engine, meter.id, [at for i, at in enumerate(_slots(T0, 9)) if i != 3])
    now = T0 + timedelta(hours=5)
    run_repairs(engine, now, POLICY)
    with engine.begin() as conn:
        assert commands.expire(conn, datetime.now(UTC) + timedelta(hours=1)) == 1
    assert run_repairs(engine, now, POLICY).requested == 0
    assert run_repairs(engine, now + timedelta(minutes=11), POLICY).requested == 1


def test_values_gone_after_they_were_stored_are_found_by_the_rescan(engine, meter):
    slots = _slots(T0, 9)
    _store(engine, meter.id, slots)
    now = T0 + timedelta(hours=5)
    assert run_repairs(engine, now, POLICY).requested == 0  # complete: the watermark moves on
    with engine.begin() as conn:  # a restore from an older backup lost 01:30
        conn.execute(s.readings_fixed.delete().where(s.readings_fixed.c.slot_start == slots[3]))
    assert run_repairs(engine, now + timedelta(minutes=20), POLICY).requested == 0  # behind it
    daily = now + timedelta(days=1, hours=1)
    assert run_repairs(engine, daily, POLICY).requested == 1  # the daily rescan sees it
    assert _backfills(engine)[-1].args["from_s"] == int(slots[3].timestamp())


def test_a_request_sent_but_never_answered_is_asked_again(engine, meter):
    """A broker that restarted without the gateway's session dropped the command."""
    _store(engine, meter.id, [at for i, at in enumerate(_slots(T0, 9)) if i != 3])
    now = T0 + timedelta(hours=5)
    run_repairs(engine, now, POLICY)
    (command,) = _backfills(engine)
    with engine.begin() as conn:
        commands.mark_sent(conn, command.id, datetime.now(UTC) - timedelta(seconds=301))
    assert run_repairs(engine, now, POLICY).requested == 0  # settled: spaced as usual
    assert run_repairs(engine, now + timedelta(minutes=11), POLICY).requested == 1
