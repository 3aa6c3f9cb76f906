"""The embedded broker after a refused publish: the gateway's session goes on, and every
reading the broker acknowledged reaches the ingest and the database.

Reported: once a gateway had published to a `$` topic, amqtt stopped handing its messages
on but went on acknowledging them (10 of 10 acknowledged, 0 stored). Each test here is a
gateway-like client (aiomqtt, its own login and client id, a persistent session, as the
agent connects) against the embedded broker with the server's ingest, both in-process."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from kenshin.server.broker.embedded import _GuardedBroker
from kenshin.server.runtime import DeviceService
from kenshin.server.security import CredentialBox
from kenshin.wire import encode_publish
from tests.support import eventually, run

from .conftest import KEY, udp_meter
from .test_bulk_ingest import _batch, _count, _give_gw_a_its_mqtt_login

LOGIN = {"username": "GW-A", "password": "gw-a secret", "identifier": "GW-A"}
READINGS = 10  # batches of 30 samples each


@contextlib.asynccontextmanager
async def ingesting(engine) -> AsyncIterator[DeviceService]:
    service = DeviceService(engine, CredentialBox(KEY))  # the embedded broker, a free port
    await service.start()
    try:
        await asyncio.wait_for(service.subscribed.wait(), 10)
        yield service
    finally:
        await service.stop()


def gateway(port: int) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, clean_session=False, timeout=5, **LOGIN)


async def publish_readings(client: aiomqtt.Client, meter_id: int) -> None:
    for k in range(READINGS):
        await client.publish(*encode_publish(_batch(meter_id, k), "GW-A"), qos=1)


async def all_stored(engine) -> None:
    await eventually(lambda: _count(engine) == READINGS * 30, timeout_s=10)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("$SYS/broker/load", b"x"),  # a `$` topic: amqtt ended the session's delivery
        ("k/GW-B/d", b"\xa1forged"),  # another gateway's topic: refused by the ACL
        ("k/GW-A/c", b"x"),  # its own downlink topic: refused by the ACL
        ("k/GW-A/d", b"\xff" * 300_000),  # garbage, and large: the ingest quarantines it
    ],
    ids=["dollar", "other-gateway", "downlink", "garbage"],
)
def test_readings_after_a_refused_or_bad_publish_are_stored(engine, world, fleet, topic, payload):
    meter = udp_meter(engine, world, fleet)
    _give_gw_a_its_mqtt_login(engine, fleet)

    async def main() -> None:
        async with ingesting(engine) as service, gateway(service.endpoint.port) as gw:
            await gw.publish(topic, payload, qos=1)  # acknowledged: 3.1.1 has no refusal
            await publish_readings(gw, meter.id)
            await all_stored(engine)

    run(main())


def _raw_publish(topic: bytes, payload: bytes, packet_id: int) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", packet_id) + payload
    assert len(body) < 128
    return bytes([0x32, len(body)]) + body  # PUBLISH, QoS 1


def _raw_connect(client_id: str) -> bytes:
    def field(data: bytes) -> bytes:
        return struct.pack("!H", len(data)) + data

    body = field(b"MQTT") + bytes([4, 0x80 | 0x40]) + struct.pack("!H", 60)  # user, password
    for part in (client_id, LOGIN["username"], LOGIN["password"]):
        body += field(part.encode())
    return bytes([0x10, len(body)]) + body


def test_an_empty_topic_name_disconnects_and_the_next_session_delivers(engine, world, fleet):
    """An empty topic name (which no client library sends) is a protocol error: the broker
    closes the connection, as MQTT says it must, rather than stay connected and deaf (it
    did, once its message loop had stopped); the gateway's next connection is served."""
    meter = udp_meter(engine, world, fleet)
    _give_gw_a_its_mqtt_login(engine, fleet)

    async def main() -> None:
        async with ingesting(engine) as service:
            port = service.endpoint.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_raw_connect("GW-A"))
            assert await reader.readexactly(4) == b"\x20\x02\x00\x00"
            writer.write(_raw_publish(b"", b"x", 1))
            await writer.drain()
            async with asyncio.timeout(5):
                while await reader.read(100):  # until the broker closes the connection
                    pass
            writer.close()
            async with gateway(port) as gw:
                await publish_readings(gw, meter.id)
                await all_stored(engine)

    run(main())


def test_a_refused_connect_leaves_no_connected_session_behind(engine, world, fleet, caplog):
    """amqtt left a refused CONNECT's persistent session "connected": the gateway's next
    CONNECT (with its new credential) then "took over" a connection that had never started
    (and at times waited on it until the client timed out)."""
    _give_gw_a_its_mqtt_login(engine, fleet)

    async def main() -> None:
        async with ingesting(engine) as service:
            port = service.endpoint.port
            stale = {**LOGIN, "password": "an old password"}
            for _ in range(3):
                with pytest.raises(aiomqtt.MqttError):
                    async with aiomqtt.Client("127.0.0.1", port, clean_session=False, **stale):
                        pass
                async with gateway(port) as gw:
                    await gw.subscribe("k/GW-A/c", qos=1)

    run(main())
    assert "take-over" not in caplog.text


def test_a_message_the_broker_cannot_hand_on_is_not_acknowledged(engine, world, fleet, monkeypatch):
    """Where a message cannot be handed on, the broker must not PUBACK it: it closes the
    connection instead, and the gateway (whose rows leave its queue only after the PUBACK)
    sends it again on its next connection."""
    meter = udp_meter(engine, world, fleet)
    _give_gw_a_its_mqtt_login(engine, fleet)
    real = _GuardedBroker._broadcast_message
    calls = []

    async def fails_once(self, session, topic, *args, **kwargs):
        if session is not None and topic == "k/GW-A/d":
            calls.append(topic)
            if len(calls) == 1:
                raise RuntimeError("injected")
        return await real(self, session, topic, *args, **kwargs)

    monkeypatch.setattr(_GuardedBroker, "_broadcast_message", fails_once)

    async def main() -> None:
        async with ingesting(engine) as service:
            port, acked, unacked = service.endpoint.port, [], []
            pending = [encode_publish(_batch(meter.id, k), "GW-A") for k in range(READINGS)]
            while pending:  # as the agent does: a batch goes until it is acknowledged
                with contextlib.suppress(aiomqtt.MqttError):
                    async with aiomqtt.Client(
                        "127.0.0.1", port, clean_session=False, timeout=1, **LOGIN
                    ) as gw:
                        while pending:
                            try:
                                await gw.publish(*pending[0], qos=1)
                            except aiomqtt.MqttError:
                                unacked.append(pending[0])
                                raise
                            acked.append(pending.pop(0))
            await all_stored(engine)
            assert len(unacked) == 1 and len(acked) == READINGS

    run(main())


def test_a_late_puback_is_one_plain_warning_not_a_traceback(caplog):
    """amqtt gives up waiting for a subscriber's PUBACK after a fixed 5 s (the ingest acks
    after its commit, which a big backfill on a busy machine can outlast) and says so twice:
    a warning, and an error with the traceback. The demo's console shows the warning alone,
    saying what it means. (Records made as amqtt makes them, on its own loggers.)"""
    import logging

    from kenshin.server.broker import StaticCredentials
    from kenshin.server.broker.embedded import EmbeddedBroker

    async def main() -> None:
        async with EmbeddedBroker(StaticCredentials([])):
            handler = logging.LoggerAdapter(
                logging.getLogger("amqtt.mqtt.protocol.handler"), {"client_id": "ingest"}
            )
            handler.warning("Timeout waiting for PUBACK for packet ID 14")
            try:
                raise TimeoutError("Timeout waiting for PUBACK for packet ID 14")
            except TimeoutError:
                logging.getLogger("amqtt.broker").exception("Task failed and will be skipped")
            logging.getLogger("amqtt.broker").error("something else went wrong")

    with caplog.at_level(logging.WARNING):
        run(main())
    said = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "amqtt.mqtt.protocol.handler",
        "WARNING",
        "Timeout waiting for PUBACK for packet ID 14 (a slow commit in the ingest; it has the "
        "message)",
    ) in said
    assert not any("Task failed" in message for _, _, message in said)
    assert ("amqtt.broker", "ERROR", "something else went wrong") in said
