"""The fleet on a 3-node RabbitMQ cluster (docs/scaling.md): the broker asks the server who
may connect, the ingest consumes a replicated quorum queue as competing consumers, and a
node killed mid-stream costs no reading and no enrollment."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest

from kenshin.gateway.enroll import enroll_once
from kenshin.gateway.identity import Identity
from tests.support import run

from .stack import FaultStack

pytestmark = pytest.mark.slow
ROLES = ("api", "ingest-a", "ingest-b", "jobs-a")
BROUTE_ID, BROUTE_PASSWORD = "0" * 28 + "CAFE", "PW-9Z7Q-SEAL"


def test_a_killed_node_costs_no_reading_and_no_enrollment(tmp_path, postgres_url):
    async def scenario() -> None:
        async with FaultStack(
            tmp_path, postgres_url, broker="rabbitmq", homes=2, roles=ROLES
        ) as stack:
            await stack.until(
                lambda: all(stack.instant_times(m) for m in stack.meter_ids()),
                "readings flow through the cluster",
                timeout_s=90,
            )
            enrolled = len(stack.events("gateway_enrolled"))
            stack.cluster.kill_node(0)  # the node everyone connected to first
            end = stack.clock.now() + timedelta(hours=1.5)
            await stack.until_sim(end)
            await stack.complete_through(end, timeout_s=90)
            stack.check_against_registers(end)
            assert len(stack.events("gateway_enrolled")) == enrolled, "nobody enrolled again"
            for name in ROLES:
                assert stack.ready(name), name

    run(scenario(), timeout_s=300)


def test_credentials_take_effect_at_once_and_client_ids_are_owned(tmp_path, postgres_url):
    """New, rotated and revoked credentials, judged by the server at each login with no
    change to the broker; another gateway's client id is refused."""

    async def scenario() -> None:
        async with FaultStack(tmp_path, postgres_url, broker="rabbitmq", homes=2) as stack:
            identity = Identity.load(stack.identities[0])
            await stack.until(
                lambda: all(stack.instant_times(m) for m in stack.meter_ids()), "flowing"
            )
            stack.kill_agent(0)  # its credential is ours to try now
            first = await enroll_once(identity)
            node2 = stack.cluster.mqtt_ports[1]
            assert _login(node2, first.mqtt.username, first.mqtt.password) == 0
            second = await enroll_once(identity)  # rotated
            assert _login(node2, second.mqtt.username, first.mqtt.password) != 0
            assert _login(node2, second.mqtt.username, second.mqtt.password) == 0
            other = Identity.load(stack.identities[1]).serial
            assert _login(node2, second.mqtt.username, second.mqtt.password, other) != 0

            # A 1 MB publish is refused (not acknowledged); a batch-sized one is taken.
            assert not _publish(node2, second.mqtt.username, second.mqtt.password, b"x" * 2**20)
            assert _publish(node2, second.mqtt.username, second.mqtt.password, b"x" * 300)

            connected = _connect(node2, second.mqtt.username, second.mqtt.password)
            try:
                gateway_id = stack.tenants[0].gateways[0]["id"]
                async with stack.operator(stack.tenants[0]) as ops:
                    answer = await ops.delete(f"/api/v1/gateways/{gateway_id}/broker-credential")
                    assert answer.status_code == 204, answer.text
                deadline = time.monotonic() + 20
                while connected.is_connected() and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert not connected.is_connected(), "the revoked session goes on"
            finally:
                connected.loop_stop()
            assert _login(node2, second.mqtt.username, second.mqtt.password) != 0

            # B-route credentials travel sealed: in no node's files (retained store, queues).
            gateway = stack.tenants[0].gateways[1]
            async with stack.operator(stack.tenants[0]) as ops:
                sites = (await ops.get("/api/v1/sites")).json()["items"]
                site = next(x for x in sites if x["id"] != gateway.get("site_id"))
                answer = await ops.post(
                    "/api/v1/meters",
                    json={"site_id": site["id"], "gateway_id": gateway["id"], "link": "wisun",
                          "device": "/dev/ttyUSB9", "broute_id": BROUTE_ID,
                          "broute_password": BROUTE_PASSWORD},
                )  # fmt: skip
                assert answer.status_code == 201, answer.text
            applied = (tmp_path / "agent1.log").read_text().count("applying settings")
            await stack.until(
                lambda: (tmp_path / "agent1.log").read_text().count("applying settings") > applied,
                "gateway 1 took its new settings",
            )
            await asyncio.to_thread(stack.cluster.stop)  # everything written out
            files = [p for p in (tmp_path / "rabbitmq").rglob("*") if p.is_file()]
            assert len(files) > 50
            for path in files:
                data = path.read_bytes()
                assert BROUTE_ID.encode() not in data and BROUTE_PASSWORD.encode() not in data, path

    run(scenario(), timeout_s=240)


def _login(port: int, username: str, password: str, client_id: str | None = None) -> int:
    """CONNACK's return code (0: accepted)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or username)
    client.username_pw_set(username, password)
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return -1
    codes: list[int] = []
    client.on_connect = lambda c, u, f, reason, p: codes.append(reason.value)
    deadline = time.monotonic() + 10
    while not codes and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return codes[0] if codes else -1


def _connect(port: int, username: str, password: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username)
    client.username_pw_set(username, password)
    client.reconnect_delay_set(60, 60)  # a reconnection would not count
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.is_connected()
    return client


def _publish(port: int, username: str, password: str, payload: bytes) -> bool:
    """Whether the broker acknowledged a QoS 1 publish on the gateway's readings topic."""
    client = _connect(port, username, password)
    try:
        info = client.publish(f"k/{username}/d", payload, qos=1)
        deadline = time.monotonic() + 5
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.05)
        return info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
