"""The managed Mosquitto's credentials through its dynamic-security API: a new, a rotated
and a revoked gateway credential each take effect at once, with no restart or reload of the
broker; a gateway cannot log in with another's client id nor use another's topics; a
packet over 64 KiB is refused; the credentials in use survive a restart of the broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import aiomqtt
import pytest
from sqlalchemy import update

from kenshin.server import schema as s
from kenshin.server.broker.access import hash_password
from kenshin.server.broker.dynsec import grant_device
from kenshin.server.runtime import DeviceService
from kenshin.server.security import CredentialBox
from tests.support import run

from .conftest import KEY


def _service(engine, tmp_path: Path) -> DeviceService:
    return DeviceService(
        engine, CredentialBox(KEY), mode="mosquitto", mosquitto_dir=tmp_path / "mosquitto"
    )


@contextlib.asynccontextmanager
async def _running(engine, tmp_path: Path):
    """The managed Mosquitto and the service's session, ready; stopped after."""
    service = _service(engine, tmp_path)
    await service.start()
    try:
        await asyncio.wait_for(service.subscribed.wait(), 10)
        yield service
    finally:
        await service.stop()


async def _connects(port: int, username: str, password: str, client_id: str) -> bool:
    try:
        async with aiomqtt.Client(
            "127.0.0.1", port, username=username, password=password, identifier=client_id
        ):
            return True
    except aiomqtt.MqttCodeError as err:
        assert err.rc in (4, 5, 134, 135), err  # bad credentials / not authorised
        return False


def _log(tmp_path: Path) -> str:
    return (tmp_path / "mosquitto" / "mosquitto.log").read_text(errors="replace")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_new_rotated_and_revoked_credentials_take_effect_without_a_reload(
    engine, world, fleet, tmp_path
):
    async def scenario():
        async with _running(engine, tmp_path) as service:
            port, pid = service.endpoint.port, service._broker.pid
            assert not await _connects(port, "GW-A", "first", "GW-A")
            await asyncio.to_thread(service.credential_issued, "GW-A", "first")
            assert await _connects(port, "GW-A", "first", "GW-A")  # new
            async with aiomqtt.Client(
                "127.0.0.1", port, username="GW-A", password="first", identifier="GW-A"
            ) as connected:
                await asyncio.to_thread(service.credential_issued, "GW-A", "second")
                with pytest.raises(aiomqtt.MqttError):  # the old session is ended
                    await asyncio.wait_for(connected.publish("k/GW-A/s", b"x", qos=1), 5)
                    await asyncio.sleep(1)
                    await asyncio.wait_for(connected.publish("k/GW-A/s", b"x", qos=1), 5)
            assert not await _connects(port, "GW-A", "first", "GW-A")  # rotated
            assert await _connects(port, "GW-A", "second", "GW-A")
            await asyncio.to_thread(service.credential_revoked, "GW-A")
            assert not await _connects(port, "GW-A", "second", "GW-A")  # revoked
            assert service._broker.pid == pid
            assert "Reloading config" not in _log(tmp_path)
            assert "mosquitto version 2.0" in _log(tmp_path)
            assert _log(tmp_path).count(" starting") == 1  # never restarted

    run(scenario(), timeout_s=60)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_another_gateways_client_id_and_topics_are_refused(engine, world, fleet, tmp_path):
    async def scenario():
        async with _running(engine, tmp_path) as service:
            port = service.endpoint.port
            for serial in ("GW-A", "GW-B"):
                await asyncio.to_thread(service.credential_issued, serial, f"{serial} pw")
            # A's login with B's client id: refused, and B stays connected.
            async with aiomqtt.Client(
                "127.0.0.1", port, username="GW-B", password="GW-B pw", identifier="GW-B"
            ) as b:
                await b.subscribe("k/GW-B/c", qos=1)
                assert not await _connects(port, "GW-A", "GW-A pw", "GW-B")
                assert not await _connects(port, "GW-A", "GW-A pw", "someone")
                async with aiomqtt.Client(
                    "127.0.0.1", port, username="GW-A", password="GW-A pw", identifier="GW-A"
                ) as a:
                    # A may not speak on B's topics, nor hear them.
                    await a.subscribe("k/GW-B/c", qos=1)
                    await a.subscribe("k/#", qos=1)
                    await a.publish("k/GW-B/c", b"forged", qos=1)
                    await a.publish("k/GW-A/c", b"also forged", qos=1)
                    await b.publish("k/GW-B/s", b"proof b still works", qos=1)
                    messages = []

                    async def listen(client, into):
                        async for message in client.messages:
                            into.append(str(message.topic))

                    taps = [asyncio.create_task(listen(a, messages))]
                    got_b: list[str] = []
                    taps.append(asyncio.create_task(listen(b, got_b)))
                    # The positive signal: the server's own command to B arrives; nothing
                    # forged did before it (the broker keeps order per publisher).
                    await service._client.publish("k/GW-B/c", b"from the server", qos=1)
                    await asyncio.wait_for(_until(lambda: got_b), 5)
                    assert got_b == ["k/GW-B/c"] and messages == []
                    for tap in taps:
                        tap.cancel()

    run(scenario(), timeout_s=60)


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_megabyte_publish_is_refused_by_the_broker(engine, world, fleet, tmp_path):
    async def scenario():
        async with _running(engine, tmp_path) as service:
            port = service.endpoint.port
            await asyncio.to_thread(service.credential_issued, "GW-A", "pw")
            async with aiomqtt.Client(
                "127.0.0.1", port, username="GW-A", password="pw", identifier="GW-A"
            ) as a:
                # The broker drops the connection: no PUBACK ever comes.
                with pytest.raises((aiomqtt.MqttError, TimeoutError)):
                    await asyncio.wait_for(a.publish("k/GW-A/d", os.urandom(1 << 20), qos=1), 5)
            assert "disconnected due to" in _log(tmp_path) or "exceeded" in _log(tmp_path)
            assert await _connects(port, "GW-A", "pw", "GW-A")  # refused the packet, not her
            assert service.counters.get("quarantined", 0) == 0

    run(scenario(), timeout_s=60)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_credentials_in_the_database_are_the_brokers_after_a_restart(
    engine, world, fleet, tmp_path
):
    """The server writes the plugin's state from the database at every start: a hash
    stored while the broker was down counts, with no plaintext anywhere on disk."""
    with engine.begin() as conn:
        conn.execute(
            update(s.gateways)
            .where(s.gateways.c.serial == "GW-A")
            .values(mqtt_username="GW-A", mqtt_password_hash=hash_password("stored pw"))
        )

    async def scenario():
        async with _running(engine, tmp_path) as service:
            assert await _connects(service.endpoint.port, "GW-A", "stored pw", "GW-A")

    run(scenario(), timeout_s=60)
    state = (tmp_path / "mosquitto" / "dynamic-security.json").read_text()
    assert "stored pw" not in state and '"clientid": "GW-A"' in state


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_enrollment_storm_is_taken_in_batches(engine, world, fleet, tmp_path):
    """150 gateways enrolling at once: every credential works, and the broker got them in
    far fewer messages than 150, none of them over its packet limit (an oversized one
    would make Mosquitto drop the service's connection: the storm's later grants lost)."""

    async def scenario():
        async with _running(engine, tmp_path) as service:
            sent = []
            publish = service._client.publish

            async def counting(topic, *args, **kwargs):
                sent.append(topic)
                return await publish(topic, *args, **kwargs)

            service._client.publish = counting
            serials = [f"GW-S{i:03d}" for i in range(150)]
            # At once, as the API's many threads would hand them over in a real storm.
            await asyncio.gather(
                *(service._control.send(grant_device(sn, f"{sn} pw"), 30) for sn in serials)
            )
            assert 3 <= sent.count("$CONTROL/dynamic-security/v1") < 75
            for serial in serials[::7]:
                assert await _connects(service.endpoint.port, serial, f"{serial} pw", serial)
            assert "oversize packet" not in _log(tmp_path)

    run(scenario(), timeout_s=60)
