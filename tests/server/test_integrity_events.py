"""A gateway's integrity check reaches the operators: drift (installed files that differ
from the signed release, `kenshin.updates.integrity`) is a critical event, and the panel's
home page names the gateway until a later check finds its files whole again; another
tenant sees nothing of it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.updates.integrity import INTEGRITY_EVENT, Drift
from kenshin.wire import Event, encode_publish

from .conftest import login

DRIFTED = Drift("1.0.0", changed=("kenshin/gateway/queue.py",)).detail()
WHOLE = Drift("1.0.0").detail()


def report(engine, detail: dict) -> None:
    topic, payload = encode_publish(Event(INTEGRITY_EVENT, int(time.time()), detail), "GW-A")
    with engine.begin() as conn:
        assert ingest.handle(conn, topic, payload).kind == "event"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_drift_is_critical_and_on_the_home_page_until_the_files_are_whole(
    engine, world, fleet, new_client
):
    report(engine, WHOLE)
    report(engine, DRIFTED)
    with engine.connect() as conn:
        events = conn.execute(
            select(s.events.c.severity).where(s.events.c.code == "gw_integrity")
            .order_by(s.events.c.id)
        ).scalars().all()  # fmt: skip
    assert events == ["info", "critical"]

    ours = login(new_client(), "viewer@a.test")
    home = ours.get("/")
    assert home.status_code == 200
    assert 'id="integrity-failures"' in home.text and ">GW-A</a>" in home.text
    theirs = login(new_client(), "viewer@b.test").get("/")
    assert 'id="integrity-failures"' not in theirs.text

    report(engine, WHOLE)  # reinstalled: the newest check is what counts
    assert 'id="integrity-failures"' not in ours.get("/").text
