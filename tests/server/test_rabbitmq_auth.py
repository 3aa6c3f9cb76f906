"""The answers to RabbitMQ's HTTP auth backend (server/broker/rabbitmq_auth.py), through
the whole application as the broker asks them: who may log in (the service account; a
gateway by its enrolled credential and only under its own client id; nobody revoked),
the vhost, a gateway's own queues and topics only. The cluster test
(tests/faults/test_rabbitmq.py) asks the same through real nodes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from kenshin.server import schema as s
from kenshin.server.app import create_app
from kenshin.server.broker.access import hash_password
from kenshin.server.broker.rabbitmq_auth import decide

SQLITE = pytest.mark.parametrize("backend", ["sqlite"])
SERVICE = ("kenshin-service", "service secret")


@pytest.fixture
def broker_app(settings, fleet, engine):
    with engine.begin() as conn:
        conn.execute(
            update(s.gateways)
            .where(s.gateways.c.id == fleet["gateway"].id)
            .values(mqtt_username="GW-A", mqtt_password_hash=hash_password("gw secret"))
        )
    app = create_app(
        settings.model_copy(
            update={
                "broker": "mqtt://kenshin-service:service%20secret@127.0.0.1:1",
                "broker_auth": "http",
                "devices": False,
            }
        )
    )
    app.state.engine = engine
    with TestClient(app) as client:
        yield client


def ask(client: TestClient, question: str, **form: str) -> str:
    answer = client.post(f"/broker/auth/{question}", data=form)
    assert answer.status_code == 200, answer.text
    return answer.text


@SQLITE
def test_logins(broker_app, engine, fleet):
    assert ask(broker_app, "user", username=SERVICE[0], password=SERVICE[1]) == "allow"
    assert ask(broker_app, "user", username=SERVICE[0], password="guess") == "deny"
    gateway = {"username": "GW-A", "password": "gw secret"}
    assert ask(broker_app, "user", **gateway, client_id="GW-A") == "allow"
    assert ask(broker_app, "user", **gateway) == "allow"  # a broker that sends no client id
    assert ask(broker_app, "user", **gateway, client_id="GW-B") == "deny"  # B's session
    assert ask(broker_app, "user", username="GW-A", password="gw secre") == "deny"
    assert ask(broker_app, "user", username="GW-Z", password="gw secret") == "deny"
    with engine.begin() as conn:  # revoked: refused at the next login, nothing reloaded
        conn.execute(update(s.gateways).values(mqtt_password_hash=None))
    assert ask(broker_app, "user", **gateway, client_id="GW-A") == "deny"


@SQLITE
def test_a_gateway_reaches_its_own_queues_and_topics_only(broker_app):
    assert ask(broker_app, "vhost", username="GW-A", vhost="/") == "allow"
    assert ask(broker_app, "vhost", username="GW-A", vhost="other") == "deny"
    for qos in "01":
        mine = {"resource": "queue", "name": f"mqtt-subscription-GW-Aqos{qos}"}
        assert (
            ask(broker_app, "resource", username="GW-A", **mine, permission="configure") == "allow"
        )
        theirs = {"resource": "queue", "name": f"mqtt-subscription-GW-Bqos{qos}"}
        assert ask(broker_app, "resource", username="GW-A", **theirs, permission="read") == "deny"
    exchange = {"resource": "exchange", "name": "amq.topic"}
    assert ask(broker_app, "resource", username="GW-A", **exchange, permission="write") == "allow"
    assert (
        ask(broker_app, "resource", username="GW-A", **exchange, permission="configure") == "deny"
    )
    topic = {"username": "GW-A", "name": "amq.topic"}
    assert ask(broker_app, "topic", **topic, permission="write", routing_key="k.GW-A.d") == "allow"
    assert ask(broker_app, "topic", **topic, permission="write", routing_key="k.GW-A.c") == "deny"
    assert ask(broker_app, "topic", **topic, permission="read", routing_key="k.GW-A.c") == "allow"
    assert ask(broker_app, "topic", **topic, permission="read", routing_key="k.GW-B.c") == "deny"
    assert ask(broker_app, "topic", **topic, permission="write", routing_key="k.#") == "deny"
    everything = {"resource": "queue", "name": "kenshin.ingest", "permission": "read"}
    assert ask(broker_app, "resource", username=SERVICE[0], **everything) == "allow"


@SQLITE
def test_only_post_and_the_four_questions_are_answered_here(broker_app):
    assert broker_app.get("/broker/auth/user").status_code == 405
    assert broker_app.post("/broker/auth/other", data={}).status_code == 404  # the app's
    assert broker_app.get("/livez").status_code == 200  # everything else goes on


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["user", "vhost", "resource", "topic"]), st.dictionaries(
    st.sampled_from(["username", "password", "client_id", "vhost", "resource", "name",
                     "permission", "routing_key"]), st.text(max_size=40)))  # fmt: skip
def test_any_form_gets_an_answer_and_a_stranger_is_never_let_in(question, form):
    allowed = decide(question, form, SERVICE, lambda username: None)
    assert isinstance(allowed, bool)
    if question == "user" and form.get("username") != SERVICE[0]:
        assert not allowed  # no stored credential: nobody but the service logs in
