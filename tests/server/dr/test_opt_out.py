"""The customer's opt-out link on SQLite and PostgreSQL: the page names the event and asks,
POST opts the home out before the deadline (counted as opted out, never failed, and
its gateway not sent the event), and after the deadline says it is too late, in both
languages; an unknown token is a 404 page."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select

from kenshin.jst import JST, SLOT
from kenshin.server import schema as s
from kenshin.server.dr import service
from kenshin.server.dr.dispatch import due_dispatches
from kenshin.server.web.i18n import translator

from ..conftest import login
from .homes import BEFORE, SLOTS, make_homes


def _tokens(engine, event_id) -> list[str]:
    p = s.dr_participations.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(p.opt_out_token).where(p.event_id == event_id).order_by(p.site_id)
        )
        return list(rows.scalars())


def _make(engine, tenant_id, start: datetime, now: datetime) -> int:
    with engine.begin() as conn:
        return service.create_event(
            conn, tenant_id, name="夕方の節電のお願い", start=start, end=start + 2 * SLOT,
            actor="t", targets_w=[100, 100], now=now,
        )  # fmt: skip


def test_opting_out_before_the_deadline(engine, client, world):
    make_homes(engine, world.tenant_a, 2, "OA")
    start = datetime.combine(datetime.now(JST).date() + timedelta(days=1), time(17), JST)
    event_id = _make(engine, world.tenant_a, start, datetime.now(JST))
    token = _tokens(engine, event_id)[0]
    ja, en = translator("ja"), translator("en")

    page = client.get(f"/dr/opt-out/{token}")
    assert page.status_code == 200
    assert "夕方の節電のお願い" in page.text and ja("dr.opt_out.confirm") in page.text
    done = client.post(f"/dr/opt-out/{token}?lang=en")
    assert done.status_code == 200 and en("dr.opt_out.done") in done.text
    assert en("dr.opt_out.done") in client.post(f"/dr/opt-out/{token}?lang=en").text  # again

    viewer = login(client, "viewer@a.test")  # a signed-in customer is not refused either
    assert client.post(f"/dr/opt-out/{_tokens(engine, event_id)[1]}").status_code == 200
    event = viewer.get(f"/api/v1/dr/events/{event_id}").json()
    assert (event["homes"]["opted_out"], event["homes"]["failed"]) == (2, 0)
    with engine.begin() as conn:
        assert due_dispatches(conn, datetime.now(JST)) == []  # nobody left to send it to


def test_after_the_deadline_it_is_too_late(engine, client, world):
    make_homes(engine, world.tenant_a, 1, "OB")
    event_id = _make(engine, world.tenant_a, SLOTS[0], BEFORE)  # in 2024: long past
    token = _tokens(engine, event_id)[0]
    en = translator("en")
    page = client.get(f"/dr/opt-out/{token}?lang=en")
    assert page.status_code == 200 and "closed at" in page.text
    assert en("dr.opt_out.confirm") not in page.text
    late = client.post(f"/dr/opt-out/{token}?lang=en")
    assert late.status_code == 409 and "closed at" in late.text
    p = s.dr_participations.c
    with engine.connect() as conn:
        assert conn.execute(select(p.state).where(p.event_id == event_id)).scalar_one() == "pending"
    assert client.get("/dr/opt-out/" + "x" * 43).status_code == 404
