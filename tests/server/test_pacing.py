"""Admission control for first connections (devices/pacing.py): each enrollment answer
names when the gateway may first connect, so a fleet enrolling at once reaches the broker
at the rate it can take; the gateway obeys it (tests/gateway/test_reenroll.py)."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.gateway.identity import Identity
from kenshin.server.devices import enrollment, registry
from kenshin.server.devices.pacing import ConnectionPacer
from kenshin.wire.enrollment import b64encode

gaps = st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=200)


@given(gaps=gaps, rate=st.floats(0.5, 50), max_delay=st.floats(0, 600))
def test_no_window_admits_more_than_the_rate_and_nobody_waits_past_the_cap(gaps, rate, max_delay):
    pacer = ConnectionPacer(rate, max_delay)
    now, admitted = 100.0, []
    for gap in gaps:
        now += gap
        delay = pacer.delay_s(now)
        assert 0 <= delay <= max_delay + 1e-9
        admitted.append((now + delay, delay < max_delay - 1e-9))
    # Slots handed out below the cap are at least one interval apart: in any window of W
    # seconds at most W * rate + 1 first connections.
    paced = sorted(at for at, below_cap in admitted if below_cap)
    assert all(b - a >= 1 / rate - 1e-6 for a, b in itertools.pairwise(paced))


def test_a_burst_is_spread_and_a_quiet_while_is_not_saved_up():
    pacer = ConnectionPacer(rate_per_s=4, max_delay_s=1.0)
    assert [pacer.delay_s(10.0) for _ in range(6)] == [0, 0.25, 0.5, 0.75, 1.0, 1.0]
    # An hour later the schedule is empty again, and a new burst starts at once.
    assert [pacer.delay_s(3610.0) for _ in range(2)] == [0, 0.25]
    with pytest.raises(ValueError, match="rate_per_s"):
        ConnectionPacer(0)


@pytest.fixture
def settings(settings):
    """The server of these tests paces a first connection every two seconds."""
    return settings.model_copy(update={"first_connections_per_s": 0.5})


def test_the_default_paces_only_the_cluster_and_shares_the_rate_among_workers(settings):
    default = settings.model_copy(update={"first_connections_per_s": None})
    assert default.paced_connections_per_s is None  # the embedded broker: not paced
    cluster = default.model_copy(update={"broker_auth": "http"})  # clean sessions by default
    assert cluster.clean_gateway_sessions and cluster.paced_connections_per_s == 60.0
    assert cluster.model_copy(update={"workers": 3}).paced_connections_per_s == 20.0
    persistent = cluster.model_copy(update={"gateway_sessions": "persistent"})
    assert persistent.paced_connections_per_s == 15.0  # a replicated queue per gateway
    assert cluster.model_copy(update={"first_connections_per_s": 0}).paced_connections_per_s is None


@pytest.mark.parametrize("backend", ["sqlite"])
def test_gateways_enrolling_together_are_told_to_connect_one_interval_apart(
    app, engine, world, client
):
    key = app.state.device_key
    identities = [Identity.generate(f"GW-P{n}", "http://x") for n in range(4)]
    csv = "serial,model,public_key,claim_code\n" + "".join(
        f"{i.serial},m,{b64encode(i.public_key)},\n" for i in identities
    )
    with engine.begin() as conn:
        registry.import_identities(conn, csv, key, "system")
        for identity in identities:
            registry.claim_gateway(conn, world.tenant_a, key=key, actor="system",
                                   serial=identity.serial)  # fmt: skip
    told, asked = [], []
    for identity in identities:
        challenge = enrollment.new_challenge(key, identity.serial)
        before = time.monotonic()
        answer = client.post("/api/v1/enroll", json={
            "serial": identity.serial, "challenge": challenge,
            "signature": identity.sign_challenge(challenge)})  # fmt: skip
        asked.append((before, time.monotonic()))
        assert answer.status_code == 200, answer.text
        told.append(answer.json()["mqtt"]["connect_after_s"])
    # The n-th may connect no sooner than 2n seconds after the first was asked (each
    # answer is rounded to 0.1 s), however long the enrollments themselves took...
    for n, ((_, after), delay) in enumerate(zip(asked, told, strict=True)):
        assert after + delay + 0.05 >= asked[0][0] + 2 * n, (n, told)
    # ...and the first at once, the last (asked within 6 s of the first) later.
    assert told[0] == 0.0 and told[-1] > 0, told
