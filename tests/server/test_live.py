"""The realtime lease API (kenshin.server.metering.live): watching a meter sends its gateway
one `realtime` command per half lease at most, stopping ends the lease, and the tenant wall
and roles hold. (The browser test in tests/web/test_graphs.py watches a real gateway.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from kenshin.server import schema as s
from kenshin.server.devices import registry
from kenshin.server.metering.live import INTERVAL_S, LEASE_S

from .conftest import assert_problem, login


@pytest.fixture
def meters(app, engine, world, fleet) -> dict[str, int]:
    """Tenant A's meter behind gateway GW-A, one of A's without a gateway, and one of B's."""
    box = app.state.credential_box
    with engine.begin() as conn:
        site_b = registry.add_site(
            conn, world.tenant_b, "system", customer_id="B1", service_code="pss87654321"
        )
        return {
            "watched": registry.add_meter(
                conn, world.tenant_a, box, "system", site_id=fleet["site"].id, link="udp",
                gateway_id=fleet["gateway"].id, udp_host="127.0.0.1",
            ).id,
            "no_gateway": registry.add_meter(
                conn, world.tenant_a, box, "system", site_id=fleet["site"].id, link="udp",
                udp_host="127.0.0.2",
            ).id,
            "theirs": registry.add_meter(
                conn, world.tenant_b, box, "system", site_id=site_b.id, link="udp",
                udp_host="127.0.0.3",
            ).id,
        }  # fmt: skip


def realtime_commands(engine) -> list:
    c = s.commands.c
    with engine.connect() as conn:
        return conn.execute(select(s.commands).where(c.name == "realtime").order_by(c.id)).all()


def age(engine, command_id: int, seconds: float) -> None:
    """Make a command as if it had been created `seconds` earlier."""
    c = s.commands.c
    with engine.begin() as conn:
        row = conn.execute(select(c.created_at).where(c.id == command_id)).one()
        conn.execute(
            update(s.commands)
            .where(c.id == command_id)
            .values(created_at=row.created_at - timedelta(seconds=seconds))
        )


def test_watching_sends_one_realtime_command_per_half_lease(client, engine, world, fleet, meters):
    login(client, "viewer@a.test")  # watching is reading: a viewer may
    url = f"/api/v1/meters/{meters['watched']}/live"
    first = client.post(url)
    assert first.status_code == 200, first.text
    lease = first.json()
    assert lease["sent"] is True
    assert lease["gateway_id"] == fleet["gateway"].id
    assert (lease["interval_s"], lease["lease_s"]) == (INTERVAL_S, LEASE_S)
    assert 3 <= INTERVAL_S <= 5 and LEASE_S == 60
    [command] = realtime_commands(engine)
    assert command.id == lease["command_id"]
    assert command.args == {"interval_s": INTERVAL_S, "duration_s": LEASE_S}
    assert command.gateway_id == fleet["gateway"].id and command.state == "pending"
    assert command.created_by == f"user:{world.viewer_a}"
    # Undelivered by the half lease, it is void (the next renewal sends a fresh one).
    assert command.expires_at - command.created_at == timedelta(seconds=LEASE_S / 2)

    # Renewed while more than half the lease is left: nothing more goes to the gateway.
    again = client.post(url).json()
    assert again["sent"] is False and again["command_id"] == command.id
    assert again["until"] == lease["until"]
    age(engine, command.id, LEASE_S / 2 - 5)
    assert client.post(url).json()["sent"] is False
    assert len(realtime_commands(engine)) == 1

    # Half the lease gone: renewed.
    age(engine, command.id, 10)
    renewed = client.post(url).json()
    assert renewed["sent"] is True and renewed["command_id"] != command.id
    assert len(realtime_commands(engine)) == 2


@pytest.mark.parametrize("state", ["failed", "expired"])
def test_a_lease_that_did_not_take_is_sent_again(client, engine, meters, state):
    login(client, "operator@a.test")
    url = f"/api/v1/meters/{meters['watched']}/live"
    first = client.post(url).json()
    with engine.begin() as conn:
        conn.execute(
            update(s.commands).where(s.commands.c.id == first["command_id"]).values(state=state)
        )
    again = client.post(url).json()
    assert again["sent"] is True and again["command_id"] != first["command_id"]


def test_stopping_ends_the_lease_and_the_next_watch_starts_one(client, engine, meters):
    login(client, "viewer@a.test")
    url = f"/api/v1/meters/{meters['watched']}/live"
    nothing = client.post(f"{url}/stop")  # no lease running: nothing to stop
    assert nothing.status_code == 200 and nothing.json()["sent"] is False
    assert realtime_commands(engine) == []

    client.post(url)
    stopped = client.post(f"{url}/stop")  # as navigator.sendBeacon sends it: no body
    assert stopped.status_code == 200
    assert stopped.json()["sent"] is True and stopped.json()["until"] is None
    _, stop = realtime_commands(engine)
    assert stop.args == {"interval_s": INTERVAL_S, "duration_s": 0}
    assert client.post(f"{url}/stop").json()["sent"] is False  # already stopped

    again = client.post(url).json()  # watching again: a new lease at once
    assert again["sent"] is True
    assert len(realtime_commands(engine)) == 3


def test_the_tenant_wall_and_what_cannot_be_watched(client, new_client, engine, meters):
    login(client, "admin@a.test")
    for path in ("live", "live/stop"):
        assert_problem(client.post(f"/api/v1/meters/{meters['theirs']}/{path}"), 404)
        assert_problem(client.post(f"/api/v1/meters/999999/{path}"), 404)
        assert_problem(client.post(f"/api/v1/meters/{meters['no_gateway']}/{path}"), 409)
    assert_problem(new_client().post(f"/api/v1/meters/{meters['watched']}/live"), 401)
    assert realtime_commands(engine) == []

    # Tenant B finds its own meter (it has no gateway to ask), never tenant A's.
    other = login(new_client(), "viewer@b.test")
    assert_problem(other.post(f"/api/v1/meters/{meters['watched']}/live"), 404)
    assert_problem(other.post(f"/api/v1/meters/{meters['theirs']}/live"), 409)
