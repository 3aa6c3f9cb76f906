"""The MQTT glue of the dr room (server/dr_link.py): a dispatch becomes the DrEvent its
gateway decodes, the gateway's DrAck and DrReport, coming in through the ingest, move the
home, and a home whose gateway spoke without answering is sent the event again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from kenshin.server import dr_link, ingest
from kenshin.server import schema as s
from kenshin.server.devices.registry import gateway_by_serial
from kenshin.server.dr.dispatch import due_dispatches, mark_sent
from kenshin.wire import (
    DrAck,
    DrAckState,
    DrDeviceReport,
    DrEvent,
    DrReport,
    DrSet,
    decode_publish,
    encode_publish,
)

from .homes import BEFORE
from .test_dispatch import _event, _states, homes  # noqa: F401 (a fixture)


def test_a_dispatch_goes_as_a_drevent_and_the_answers_move_the_home(engine, world, homes):  # noqa: F811
    event_id = _event(engine, world.tenant_a, price_jpy_kwh=30.5)
    with engine.begin() as conn:
        due = due_dispatches(conn, BEFORE)
        mark_sent(conn, [d.participation_id for d in due])
    first = due[0]
    topic, payload = encode_publish(dr_link.as_message(first), first.serial)
    serial, event = decode_publish(topic, payload)
    assert serial == first.serial and isinstance(event, DrEvent)
    assert event.event_id == event_id and not event.cancelled
    assert event.targets == tuple((slot, max(1, w)) for slot, w in first.targets)
    assert {price for _, price in event.price} == {3050}  # yen/kWh × 100, every slot
    assert len(event.price) == (event.end_s - event.start_s) // 1800

    def answer(message) -> str:
        with engine.begin() as conn:
            return ingest.handle(conn, *encode_publish(message, first.serial)).kind

    assert answer(DrAck(event_id, DrAckState.ACCEPTED, 2)) == "dr_ack"
    assert _states(engine, event_id)[0] == "acknowledged"
    battery = DrDeviceReport(0x027D01, (DrSet(0xDA, b"\x43", True, b"\x43"),), 0, -1000, 0)
    assert answer(DrReport(event_id, (battery,), ok=True)) == "dr_report"
    p = s.dr_participations.c
    with engine.connect() as conn:
        row = conn.execute(
            select(p.state, p.devices, p.report).where(p.id == first.participation_id)
        ).one()
    assert row.state == "done" and row.devices == {"count": 2}
    assert row.report["ok"] is True and row.report["devices"][0]["power_during_w"] == -1000
    assert answer(DrAck(event_id, DrAckState.CANCELLED)) == "dr_ack"  # moves nothing
    assert _states(engine, event_id)[0] == "done"


def test_a_home_that_spoke_without_answering_is_sent_the_event_again(engine, world, homes):  # noqa: F811
    _event(engine, world.tenant_a)
    with engine.begin() as conn:
        due = due_dispatches(conn, BEFORE)
        mark_sent(conn, [d.participation_id for d in due])
        p = s.dr_participations.c
        sent_at = conn.execute(select(p.sent_at).where(p.id == due[0].participation_id)).scalar()
        gateway = gateway_by_serial(conn, due[0].serial)
        heard = lambda ids: {gateway.id: sent_at + timedelta(seconds=5)}  # noqa: E731
        assert due_dispatches(conn, BEFORE, heard) == []  # its answer may be on the way
        heard = lambda ids: {gateway.id: sent_at + timedelta(seconds=60)}  # noqa: E731
        again = due_dispatches(conn, BEFORE, heard)
        assert [d.participation_id for d in again] == [due[0].participation_id]
        assert again[0].targets == due[0].targets and not again[0].cancelled
        mark_sent(conn, [due[0].participation_id])  # sent again: `sent_at` moves
        resent_at = conn.execute(select(p.sent_at).where(p.id == due[0].participation_id)).scalar()
        assert resent_at > sent_at
        soon = {gateway.id: resent_at + timedelta(seconds=5)}
        assert due_dispatches(conn, BEFORE, lambda ids: soon) == []
