"""B-route credentials are never at rest outside the server's sealed column: the retained
settings carry them only sealed to the gateway's seal key, so neither the broker's
retained store nor Mosquitto's persistence file holds them; a new seal key gets the same
version sealed again; a gateway that enrolled without a key gets none, and an event. The
key is covered by the enrollment's signature, so no one else can choose it."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest
from sqlalchemy import select, update

from kenshin.gateway.identity import Identity
from kenshin.server import schema as s
from kenshin.server.broker.access import hash_password
from kenshin.server.devices import config, enrollment, registry
from kenshin.server.runtime import SERVICE_USER, DeviceService
from kenshin.server.security import CredentialBox
from kenshin.wire import Settings, decode_publish
from kenshin.wire.enrollment import b64encode
from kenshin.wire.sealing import NotSealedToThisKey, SealKey
from tests.support import run

from .conftest import KEY

BROUTE_ID = "0" * 28 + "CAFE"
BROUTE_PASSWORD = "PW-9Z7Q-SEAL"
SECRETS = (BROUTE_ID.encode(), BROUTE_PASSWORD.encode())


def _wisun_meter(engine, world, fleet) -> None:
    with engine.begin() as conn:
        registry.add_meter(
            conn,
            world.tenant_a,
            CredentialBox(KEY),
            "system",
            site_id=fleet["site"].id,
            link="wisun",
            gateway_id=fleet["gateway"].id,
            device="/dev/ttyUSB0",
            broute_id=BROUTE_ID,
            broute_password=BROUTE_PASSWORD,
        )


def _enrolled(engine, fleet, seal_key: SealKey | None) -> None:
    """GW-A as after its enrollment: a broker login and (or not) the agent's seal key."""
    with engine.begin() as conn:
        conn.execute(
            update(s.gateways)
            .where(s.gateways.c.id == fleet["gateway"].id)
            .values(
                mqtt_username="GW-A",
                mqtt_password_hash=hash_password("gw-a secret"),
                seal_public_key=seal_key and seal_key.public_key,
            )
        )


def _opens(settings: Settings, key: SealKey) -> dict[str, str]:
    return key.open(settings.values["meter"]["sealed"], serial="GW-A", version=settings.version)


async def _retained_settings(service: DeviceService, key: SealKey) -> tuple[bytes, Settings]:
    """The retained settings a service subscriber gets on k/+/g, once sealed to `key`."""
    endpoint = service.endpoint
    while True:
        async with aiomqtt.Client(
            endpoint.host,
            endpoint.port,
            username=SERVICE_USER,
            password=service._service_password,
            identifier=f"seal-check-{id(key)}",
        ) as client:
            await client.subscribe("k/+/g", qos=1)
            async for message in client.messages:
                payload = bytes(message.payload)
                _, settings = decode_publish(str(message.topic), payload)
                with contextlib.suppress(NotSealedToThisKey):
                    _opens(settings, key)
                    return payload, settings
                break  # an older seal, still retained: ask again
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("mode", ["mosquitto", "embedded"])
def test_retained_settings_and_broker_persistence_hold_no_broute_credentials(
    engine, world, fleet, tmp_path, mode
):
    _wisun_meter(engine, world, fleet)
    first, second = SealKey(), SealKey()
    _enrolled(engine, fleet, first)
    broker_dir = tmp_path / "mosquitto"

    async def scenario() -> list[bytes]:
        service = DeviceService(engine, CredentialBox(KEY), mode=mode, mosquitto_dir=broker_dir)
        await service.start()
        try:
            await asyncio.wait_for(service.subscribed.wait(), 30)
            seen = []
            payload, settings = await asyncio.wait_for(_retained_settings(service, first), 30)
            seen.append(payload)
            assert _opens(settings, first) == {
                "broute_id": BROUTE_ID,
                "broute_password": BROUTE_PASSWORD,
            }
            # The agent restarted and enrolled with a new key: same version, sealed again.
            _enrolled(engine, fleet, second)
            service.wake()
            payload, again = await asyncio.wait_for(_retained_settings(service, second), 30)
            assert again.version == settings.version
            seen.append(payload)
            if mode == "embedded":  # its retained store is all the state it keeps
                retained = service._broker._broker._retained_messages
                seen += [bytes(message.data) for message in retained.values()]
            return seen
        finally:
            await service.stop()  # a clean stop: Mosquitto writes mosquitto.db

    seen = run(scenario(), timeout_s=90)
    assert len(seen) >= 2
    files = [p.read_bytes() for p in broker_dir.rglob("*") if p.is_file()]
    if mode == "mosquitto":
        (persisted,) = [p.read_bytes() for p in broker_dir.rglob("mosquitto.db")]
        assert b"k/GW-A/g" in persisted  # the settings were persisted: absence means something
    for blob in seen + files:
        for secret in SECRETS:
            assert secret not in blob


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_gateway_without_a_seal_key_gets_no_credentials_and_an_event(engine, world, fleet):
    _wisun_meter(engine, world, fleet)
    _enrolled(engine, fleet, None)  # an agent older than sealing
    with engine.begin() as conn:
        gateway = conn.execute(select(s.gateways).where(s.gateways.c.serial == "GW-A")).one()
        effective = config.effective_settings(conn, gateway, CredentialBox(KEY), now_s=1)
        wire = config.for_wire(conn, gateway, effective)
        events = conn.execute(select(s.events.c.code)).scalars().all()
    assert effective.values["meter"]["broute_password"] == BROUTE_PASSWORD  # memory only
    assert wire.values["meter"] == {"ref": wire.values["meter"]["ref"], "link": "wisun",
                                    "device": "/dev/ttyUSB0"}  # fmt: skip
    assert "broute_credentials_withheld" in events


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_seal_key_is_signed_and_stored_at_enrollment(engine, world, client):
    identity = Identity.generate("GW-S", "http://x")
    csv = f"serial,model,public_key,claim_code\nGW-S,m,{b64encode(identity.public_key)},\n"
    with engine.begin() as conn:
        registry.import_identities(conn, csv, KEY, "system")
        registry.claim_gateway(conn, world.tenant_a, key=KEY, actor="system", serial="GW-S")
    mine, theirs = SealKey().public_key, SealKey().public_key

    def enroll(sent: bytes | None, signed: bytes | None) -> bytes | None:
        challenge = enrollment.new_challenge(KEY, "GW-S")
        signature = identity.sign_challenge(challenge, signed)
        with engine.begin() as conn:
            enrollment.enroll(conn, KEY, "GW-S", challenge, signature, sent)
            row = registry.gateway_by_serial(conn, "GW-S")
        return row.seal_public_key

    assert enroll(mine, mine) == mine
    for sent in (theirs, None):  # swapped, or stripped, on the way
        with pytest.raises(enrollment.EnrollmentRefused, match="signature"):
            enroll(sent, mine)
    assert enroll(None, None) is None  # an older agent: the previous key is void
    answer = client.post(
        "/api/v1/enroll",
        json={"serial": "GW-S", "challenge": "c", "signature": "s", "seal_key": "c2hvcnQ"},
    )
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_gateways_are_told_the_public_broker_address(engine, world, app, client):
    """The ingest may use a loopback listener; gateways get the address, port and TLS of
    the one for the Internet (settings mqtt_public_*), not the ingest's."""
    identity = Identity.generate("GW-P", "http://x")
    csv = f"serial,model,public_key,claim_code\nGW-P,m,{b64encode(identity.public_key)},\n"
    key = app.state.device_key
    with engine.begin() as conn:
        registry.import_identities(conn, csv, key, "system")
        registry.claim_gateway(conn, world.tenant_a, key=key, actor="system", serial="GW-P")

    def told() -> dict:
        challenge = enrollment.new_challenge(key, "GW-P")
        body = {"serial": "GW-P", "challenge": challenge,
                "signature": identity.sign_challenge(challenge)}  # fmt: skip
        answer = client.post("/api/v1/enroll", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["mqtt"]

    assert (told()["port"], told()["tls"]) == (1883, False)  # no broker here, nothing set
    app.state.settings = app.state.settings.model_copy(
        update={"mqtt_public_host": "mqtt.example.jp", "mqtt_public_port": 8883,
                "mqtt_public_tls": True}
    )  # fmt: skip
    mqtt = told()
    assert (mqtt["host"], mqtt["port"], mqtt["tls"]) == ("mqtt.example.jp", 8883, True)
