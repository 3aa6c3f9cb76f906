"""The dr room's door for the MQTT side, on SQLite and PostgreSQL: what is owed to which
gateway (each home's share of the tenant's target, split by baseline), marked sent,
cancels after a cancel or an opt-out, and the gateways' answers moving homes forward only.
Plus the split itself, exact (hypothesis)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from kenshin.jst import SLOT
from kenshin.server import schema as s
from kenshin.server.dr import service
from kenshin.server.dr.dispatch import (
    due_dispatches,
    mark_sent,
    on_ack,
    on_report,
    split_targets,
)

from .homes import BEFORE, SLOTS, make_homes, store_days


@pytest.fixture
def homes(engine, world):
    """Tenant A: three homes drawing 100, 200 and 80 Wh a slot; tenant B: one home."""
    mine = make_homes(engine, world.tenant_a, 3, "DA")
    for home, normal in zip(mine, (100, 200, 80), strict=True):
        store_days(engine, home.meter_id, normal, normal)
    make_homes(engine, world.tenant_b, 1, "DB")
    return mine


def _event(engine, tenant_id, **more) -> int:
    values = {"name": "夕方の節電", "start": SLOTS[0], "end": SLOTS[-1] + SLOT,
              "actor": "user:1", "targets_w": [300] * 4, "now": BEFORE} | more  # fmt: skip
    with engine.begin() as conn:
        return service.create_event(conn, tenant_id, **values)


def _states(engine, event_id) -> list[str]:
    p = s.dr_participations.c
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(p.state).where(p.event_id == event_id).order_by(p.site_id)
            ).scalars()
        )


def test_each_home_gets_its_share_once_and_a_cancel_once(engine, world, homes):
    event_id = _event(engine, world.tenant_a, price_jpy_kwh=30.5)
    with engine.begin() as conn:
        due = due_dispatches(conn, BEFORE)
    assert [d.serial for d in due] == [h.serial for h in homes]
    # 300 W in proportion to 100 : 200 : 80 = 78.9, 157.9, 63.2 -> 79, 158, 63 (largest remainder)
    assert [[w for _, w in d.targets] for d in due] == [[79] * 4, [158] * 4, [63] * 4]
    first = due[0]
    assert first.targets[0][0] == int(SLOTS[0].timestamp())
    assert (first.start_s, first.end_s) == (
        int(SLOTS[0].timestamp()),
        int(SLOTS[-1].timestamp()) + 1800,
    )
    assert (first.event_id, first.shed, first.price, first.cancelled) == (
        event_id,
        None,
        30.5,
        False,
    )
    assert first.opt_out_deadline_s == first.start_s

    with engine.begin() as conn:
        mark_sent(conn, [d.participation_id for d in due])
        assert due_dispatches(conn, BEFORE) == []  # sent once
        mark_sent(conn, [d.participation_id for d in due])  # again: no cancel marked
    assert _states(engine, event_id) == ["sent"] * 3

    with engine.begin() as conn:
        part, event = service.participation_by_token(
            conn, conn.execute(select(s.dr_participations.c.opt_out_token).where(
                s.dr_participations.c.site_id == homes[2].site_id)).scalar_one()
        )  # fmt: skip
        assert service.opt_out(conn, part, event, via="link", now=BEFORE)
        owed = due_dispatches(conn, BEFORE)
        assert [(d.serial, d.cancelled) for d in owed] == [(homes[2].serial, True)]
        mark_sent(conn, [owed[0].participation_id])
        service.cancel(conn, world.tenant_a, event_id, "user:1")
        owed = due_dispatches(conn, BEFORE)
    assert [(d.serial, d.cancelled) for d in owed] == [(h.serial, True) for h in homes[:2]]
    with engine.begin() as conn:
        mark_sent(conn, [d.participation_id for d in owed])
        assert due_dispatches(conn, BEFORE) == []
        assert due_dispatches(conn, SLOTS[-1] + SLOT) == []  # ended: nothing owed


def test_an_opted_out_home_is_not_sent_and_others_share_its_part(engine, world, homes):
    event_id = _event(engine, world.tenant_a)
    with engine.begin() as conn:
        token = conn.execute(
            select(s.dr_participations.c.opt_out_token).where(
                s.dr_participations.c.site_id == homes[0].site_id
            )
        ).scalar_one()
        assert service.opt_out(conn, *service.participation_by_token(conn, token), via="link",
                               now=BEFORE)  # fmt: skip
        due = due_dispatches(conn, BEFORE)
    assert [(d.serial, [w for _, w in d.targets]) for d in due] == [
        (homes[1].serial, [214] * 4),  # 300 x 200 / 280 = 214.3
        (homes[2].serial, [86] * 4),  # 300 x 80 / 280 = 85.7
    ]
    assert _states(engine, event_id) == ["opted_out", "pending", "pending"]


def test_a_shed_event_and_a_proposal(engine, world, homes):
    shed = _event(engine, world.tenant_a, targets_w=None, shed_level=2)
    proposal = _event(engine, world.tenant_a, proposed=True)
    with engine.begin() as conn:
        due = due_dispatches(conn, BEFORE)
        assert {d.event_id for d in due} == {shed}  # a proposal is not sent
        assert {(d.shed, d.targets) for d in due} == {(2, ())}
        service.confirm(conn, world.tenant_a, proposal, "user:1", BEFORE)
        assert {d.event_id for d in due_dispatches(conn, BEFORE)} == {shed, proposal}


def test_gateways_answers_move_homes_forward_only(engine, world, homes):
    event_id = _event(engine, world.tenant_a)
    with engine.begin() as conn:
        mark_sent(conn, [d.participation_id for d in due_dispatches(conn, BEFORE)])
        a, b, c = homes
        assert on_ack(conn, a.gateway_id, event_id, "acknowledged", ["aircon", "battery"])
        assert not on_ack(conn, a.gateway_id, event_id, "acknowledged", ["aircon"])  # again
        assert on_ack(conn, b.gateway_id, event_id, "no_devices")
        assert not on_ack(conn, b.gateway_id, event_id, "acting")  # no devices is final
        assert on_ack(conn, c.gateway_id, event_id, "refused", reason="battery low")
        assert on_ack(conn, a.gateway_id, event_id, "acting")
        assert on_report(conn, a.gateway_id, event_id, {"devices": {"aircon": "ok"}})
        assert not on_ack(conn, a.gateway_id, event_id, "acting")  # late: done stays
        assert not on_ack(conn, a.gateway_id, 999_999, "acting")  # no such event
        with pytest.raises(ValueError):
            on_ack(conn, a.gateway_id, event_id, "opted_out")
        rows = conn.execute(
            select(s.dr_participations).where(s.dr_participations.c.event_id == event_id)
            .order_by(s.dr_participations.c.site_id)
        ).all()  # fmt: skip
    assert [r.state for r in rows] == ["done", "no_devices", "refused"]
    assert rows[0].devices == ["aircon", "battery"]
    assert rows[0].report == {"devices": {"aircon": "ok"}}
    assert rows[2].reason == "battery low"


def test_bad_events_are_refused(engine, world, homes):
    def refused(**more) -> str:
        with pytest.raises(service.DrError) as err, engine.begin() as conn:
            values = {"name": "x", "start": SLOTS[0], "end": SLOTS[-1] + SLOT, "actor": "t",
                      "targets_w": [1] * 4, "now": BEFORE} | more  # fmt: skip
            service.create_event(conn, world.tenant_a, **values)
        return str(err.value)

    assert "half hour" in refused(start=SLOTS[0] + timedelta(minutes=10))
    assert "future" in refused(now=SLOTS[0])
    assert "4 slots" in refused(targets_w=[1, 2])
    assert "either" in refused(shed_level=1)
    assert "deadline" in refused(opt_out_deadline=SLOTS[1])
    assert "not homes" in refused(site_ids=[homes[0].site_id, 10**6])


@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=6),
    st.lists(st.lists(st.one_of(st.none(), st.integers(0, 10**4)), min_size=6, max_size=6),
             min_size=1, max_size=8),
)  # fmt: skip
def test_shares_add_up_to_each_target_exactly(targets, weights):
    split = split_targets(targets, {i: w[: len(targets)] for i, w in enumerate(weights)})
    for i, target in enumerate(targets):
        assert sum(shares[i] for shares in split.values()) == target
        assert all(shares[i] >= 0 for shares in split.values())
