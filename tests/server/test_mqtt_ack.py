"""The ingest's manual acknowledgement (kenshin.server.broker.mqtt_ack) against a real
Mosquitto: a message not acknowledged comes again at the next connection of the persistent
session; one acknowledged does not. An aiomqtt or paho-mqtt upgrade that breaks the private
path the adapter takes fails here."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from kenshin.ports import free_tcp_port
from kenshin.server.broker import (
    Account,
    MosquittoListener,
    MosquittoProcess,
    PrincipalKind,
    hash_password,
    write_mosquitto_config,
)
from kenshin.server.broker.mqtt_ack import ManualAckUnavailable, ack, manual
from tests.support import run

from .test_broker import _mosquitto_or_skip, _run_as

HOST = "127.0.0.1"
ACCOUNTS = [
    Account("gw1", hash_password("pw-gw1", iterations=101), PrincipalKind.DEVICE),
    Account("ingest", hash_password("pw-ingest", iterations=101), PrincipalKind.SERVICE),
]


def _ingest(port: int) -> aiomqtt.Client:
    return manual(
        aiomqtt.Client(
            HOST, port, username="ingest", password="pw-ingest", identifier="ingest-ack",
            clean_session=False, timeout=5,
        )
    )  # fmt: skip


async def _next(client: aiomqtt.Client, timeout_s: float = 3.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout_s):
        return await anext(aiter(client.messages))


async def _nothing_within(client: aiomqtt.Client, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await anext(aiter(client.messages))
    except TimeoutError:
        return True
    return False


def test_an_unacknowledged_message_comes_again_and_an_acknowledged_one_does_not(tmp_path):
    _mosquitto_or_skip()
    port = free_tcp_port()
    files = write_mosquitto_config(
        tmp_path / "mosquitto", ACCOUNTS, [MosquittoListener(port)], user=_run_as()
    )

    async def publish(payload: bytes) -> None:
        async with aiomqtt.Client(
            HOST, port, username="gw1", password="pw-gw1", identifier="gw1", timeout=5
        ) as gw:
            await gw.publish("k/gw1/d", payload, qos=1)

    async def main() -> None:
        async with MosquittoProcess(files.directory, port):
            async with _ingest(port) as ingest:
                await ingest.subscribe("k/+/d", qos=1)
                await publish(b"one")
                assert (await _next(ingest)).payload == b"one"  # taken, never acknowledged
            async with _ingest(port) as ingest:
                again = await _next(ingest)
                assert again.payload == b"one"  # the broker still holds it for us
                ack(ingest, again)
                await asyncio.sleep(0.2)  # the PUBACK on its way before we leave
            await publish(b"two")
            async with _ingest(port) as ingest:
                message = await _next(ingest)
                assert message.payload == b"two"  # "one" was acknowledged: gone
                ack(ingest, message)
                assert await _nothing_within(ingest, 0.3)

    run(main(), timeout_s=30)


def test_a_client_without_the_private_path_is_refused_loudly():
    class NotAiomqtt:
        pass

    with pytest.raises(ManualAckUnavailable, match="manual acknowledgement"):
        manual(NotAiomqtt())  # type: ignore[type-var]
