"""Many messages in one transaction (the ingest under load): the same rows, rollups and
progress as one by one, redelivery a no-op, the COPY path on PostgreSQL included."""

from __future__ import annotations

from sqlalchemy import func, select

from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.wire import InstantSample, ReadingsBatch, encode_publish

from .conftest import udp_meter

T0 = 1_780_000_200


def _work(meter_id: int, batches: int) -> list[tuple[str, bytes]]:
    return [
        encode_publish(
            ReadingsBatch(
                k + 1,
                f"m{meter_id}",
                tuple(InstantSample(T0 + 1800 * k + 60 * i, 100 + k + i, 5, 5) for i in range(30)),
            ),
            "GW-A",
        )
        for k in range(batches)
    ]


def test_a_group_writes_what_its_messages_would_and_twice_is_once(engine, world, fleet):
    meter = udp_meter(engine, world, fleet)
    work = _work(meter.id, 30)  # 900 readings: past the COPY threshold on PostgreSQL
    assert len(work) * 30 >= ingest.COPY_FROM
    junk = ("k/GW-A/d", b"\xff")
    for _ in range(2):
        with engine.begin() as conn:
            outcomes = ingest.handle_group(conn, [*work[:10], junk, *work[10:]])
        assert [o.kind for o in outcomes].count("readings") == 30
        assert outcomes[10].kind == "quarantined"
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(s.readings_instant)).scalar()
        latest = conn.execute(select(s.meter_latest)).one()
        progress = conn.execute(select(s.ingest_progress.c.last_seq)).scalar()
        seen = conn.execute(
            select(s.gateways.c.state, s.gateways.c.last_seen_at).where(
                s.gateways.c.id == fleet["gateway"].id
            )
        ).one()
    assert count == 900
    assert (latest.power_w, int(latest.at.timestamp())) == (100 + 29 + 29, T0 + 1800 * 29 + 60 * 29)
    assert progress == 30
    assert seen.state == "working" and seen.last_seen_at is not None
