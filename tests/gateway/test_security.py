"""Security of the device path: identities must be proven, and B-route credentials appear
in no log, no gateway file and no API response (searched for, all of them); they reach
the agent sealed to its key of the moment, which opens them only in memory."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.enroll import Enrollment, EnrollmentError, MqttAccess, enroll_once
from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.server import schema as s
from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
from kenshin.server.devices import enrollment
from kenshin.sim.clock import ScaledClock
from kenshin.sim.dongle import DongleEmulator, DongleModel
from kenshin.sim.meter import MeterConfig, SimulatedMeter
from kenshin.wire import Settings
from kenshin.wire.enrollment import b64encode
from kenshin.wire.sealing import SealKey, seal
from tests.gateway.conftest import install
from tests.gateway.test_end_to_end import ADMIN, OPERATOR, PASSWORD, login, server
from tests.support import eventually, run

BROUTE_ID = "0123456789ABCDEF0123456789SECRET"
BROUTE_PASSWORD = "PW-SECRET-42"


def test_challenges_are_bound_to_serial_and_time():
    key = b"k" * 32
    challenge = enrollment.new_challenge(key, "GW1", now=1_000_000)
    enrollment.check_challenge(key, "GW1", challenge, now=1_000_010)
    with pytest.raises(enrollment.EnrollmentRefused, match="not issued to this serial"):
        enrollment.check_challenge(key, "GW2", challenge, now=1_000_010)
    with pytest.raises(enrollment.EnrollmentRefused, match="expired"):
        enrollment.check_challenge(key, "GW1", challenge, now=1_000_000 + 3600)
    with pytest.raises(enrollment.EnrollmentRefused, match="malformed"):
        enrollment.check_challenge(key, "GW1", "garbage", now=1_000_000)


def _csv(*identities: tuple[Identity, str]) -> str:
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["serial", "model", "public_key", "claim_code"])
    for identity, code in identities:
        writer.writerow([identity.serial, "kenshin-gw", b64encode(identity.public_key), code])
    return rows.getvalue()


async def _made_and_imported(app, base: str, identity_path: Path) -> str:
    """A tenant with an operator, and a box from the factory: its identity file saved at
    `identity_path`, its row imported. Returns its claim code."""
    ensure_admin(app.state.engine, ADMIN, PASSWORD)
    tenant = create_tenant(app.state.engine, "Denryoku", "retailer")
    create_user(app.state.engine, tenant, OPERATOR, PASSWORD, role="operator")
    identity = Identity.generate("GW-SEC", base)
    identity.save(identity_path)
    code = new_claim_code()
    async with httpx.AsyncClient(base_url=base) as root:
        await login(root, ADMIN)
        await root.post(
            "/api/v1/gateways/import",
            content=_csv((identity, code)),
            headers={"content-type": "text/csv"},
        )
    return code


def _wisun_home(tmp_path: Path, clock: ScaledClock) -> DongleEmulator:
    """The meter of a Wi-SUN home, behind an emulated dongle that wants our B-route ID."""
    meter = SimulatedMeter(clock, MeterConfig(seed=5, pv=True))
    return DongleEmulator(
        meter,
        model=DongleModel.BP35C2,
        route_b_id=BROUTE_ID,
        password=BROUTE_PASSWORD,
        link=tmp_path / "ttyWISUN",
    )


def _wisun_meter(dongle: DongleEmulator) -> dict:
    return {
        "link": "wisun",
        "device": str(dongle.link),
        "broute_id": BROUTE_ID,
        "broute_password": BROUTE_PASSWORD,
    }


def test_secrets_stay_secret_and_identities_must_be_proven(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario() -> list[str]:
        responses: list[str] = []
        url = f"sqlite:///{tmp_path / 'kenshin.db'}"
        async with server(url, "embedded", tmp_path) as (app, base):
            engine = app.state.engine
            identity_path = tmp_path / "gateway" / "identity.json"
            code = await _made_and_imported(app, base, identity_path)

            # An impostor with the serial but not the key is refused, claimed or not.
            impostor = Identity.generate("GW-SEC", base)
            with pytest.raises(EnrollmentError, match="signature does not match") as refused:
                await enroll_once(impostor)
            assert refused.value.status == 401

            clock = ScaledClock(speed=60)
            dongle = _wisun_home(tmp_path, clock)
            async with dongle, httpx.AsyncClient(base_url=base) as ops:
                await login(ops, OPERATOR)
                _, gateway, answer = await install(ops, code, "pss00000009", _wisun_meter(dongle))
                responses.append(answer.text)
                with pytest.raises(EnrollmentError):
                    await enroll_once(impostor)  # claimed now: still refused

                queue_dir = tmp_path / "gateway"
                agent = GatewayAgent(
                    Identity.load(identity_path),
                    AgentOptions(queue_path=queue_dir / "queue.db"),
                    clock=clock,
                )
                running = asyncio.create_task(agent.run_forever())
                try:

                    def fixed_rows() -> int:
                        with engine.connect() as conn:
                            return len(conn.execute(select(s.readings_fixed)).all())

                    await eventually(lambda: dongle.joins >= 1, timeout_s=30)
                    command = await ops.post(
                        f"/api/v1/gateways/{gateway['id']}/commands",
                        json={"name": "read_property", "args": {"epc": "0xC0"}},
                    )
                    url = f"/api/v1/commands/{command.json()['id']}"

                    async def finished() -> bool:  # its result went through the whole path
                        return (await ops.get(url)).json()["state"] in ("done", "failed")

                    async with asyncio.timeout(30):
                        while not await finished():
                            await asyncio.sleep(0.05)
                    for path in (
                        "/api/v1/meters",
                        f"/api/v1/gateways/{gateway['id']}",
                        f"/api/v1/gateways/{gateway['id']}/settings",
                        "/api/v1/events",
                        "/api/v1/commands/1",
                        "/api/v1/openapi.json",
                    ):
                        responses.append((await ops.get(path)).text)
                    settings = (await ops.get(f"/api/v1/gateways/{gateway['id']}/settings")).json()
                    assert settings["values"]["meter"]["broute_password"] == "***"
                    assert agent.meter is not None  # the agent did get the credentials
                finally:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
                    agent.queue.close()
            # At rest in the database: sealed, not in clear.
            with engine.connect() as conn:
                row = conn.execute(select(s.meters)).one()
            assert BROUTE_PASSWORD.encode() not in row.broute_password_enc
        return responses

    responses = run(scenario(), timeout_s=120)
    logs = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    gateway_files = [p.read_bytes() for p in (tmp_path / "gateway").rglob("*") if p.is_file()]
    for secret in (BROUTE_PASSWORD, BROUTE_ID):
        assert secret not in logs, "a B-route credential reached a log"
        assert all(secret.encode() not in blob for blob in gateway_files), "...a gateway file"
        assert all(secret not in text for text in responses), "...an API response"
    assert len(caplog.records) > 20  # the logs searched are not empty
    assert Path(tmp_path / "gateway" / "queue.db").exists()


def test_a_wisun_home_joins_with_sealed_credentials_and_a_restarted_agent_too(tmp_path):
    """End to end: the agent joins the meter with credentials it opened from the sealed
    settings, and readings arrive; a restarted agent (a new seal key) gets the same
    settings sealed again to its key, joins and delivers too."""

    async def scenario() -> None:
        url = f"sqlite:///{tmp_path / 'kenshin.db'}"
        async with server(url, "embedded", tmp_path) as (app, base):
            engine = app.state.engine
            identity_path = tmp_path / "gateway" / "identity.json"
            code = await _made_and_imported(app, base, identity_path)
            clock = ScaledClock(speed=60)
            dongle = _wisun_home(tmp_path, clock)
            async with dongle, httpx.AsyncClient(base_url=base) as ops:
                await login(ops, OPERATOR)
                await install(ops, code, "pss00000010", _wisun_meter(dongle))
                fast = {"poll": {"instant_interval_s": 5}, "uplink": {"max_delay_s": 1}}
                await ops.patch("/api/v1/settings/default", json={"values": fast})

                def samples() -> int:
                    with engine.connect() as conn:
                        return len(conn.execute(select(s.readings_instant)).all())

                async def runs_and_delivers(joins: int) -> GatewayAgent:
                    agent = GatewayAgent(
                        Identity.load(identity_path),
                        AgentOptions(queue_path=tmp_path / "gateway" / "queue.db"),
                        clock=clock,
                    )
                    running = asyncio.create_task(agent.run_forever())
                    try:
                        before = samples()
                        await eventually(lambda: dongle.joins >= joins, timeout_s=30)
                        await eventually(lambda: samples() >= before + 2, timeout_s=30)
                        meter = agent.state.settings.values["meter"]
                        assert "sealed" in meter and "broute_password" not in meter
                        with engine.connect() as conn:
                            stored = conn.execute(select(s.gateways.c.seal_public_key)).scalar()
                        assert stored == agent.enrollment.seal_key.public_key
                        return agent
                    finally:
                        running.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await running
                        agent.queue.close()

                first = await runs_and_delivers(joins=1)
                second = await runs_and_delivers(joins=2)  # a new process: a new key
                assert first.enrollment.seal_key.public_key != (
                    second.enrollment.seal_key.public_key
                )
                assert first.state.settings.version == second.state.settings.version

    run(scenario(), timeout_s=120)


def test_settings_that_do_not_open_are_reported_not_applied(tmp_path):
    """A sealed blob the agent cannot open is an Event and a Status error count, never a
    crash; one sealed to an earlier key of its own is passed over quietly (the server
    seals it again to the new key)."""

    async def scenario() -> None:
        agent = GatewayAgent(
            Identity.generate("GW-SEC", "http://127.0.0.1:9"),
            AgentOptions(queue_path=tmp_path / "queue.db"),
        )
        access = MqttAccess("127.0.0.1", 1883, False, "GW-SEC", "pw")
        agent.enrollment = Enrollment("GW-SEC", access, SealKey())
        meter = {"ref": "m1", "link": "wisun", "device": "/dev/null"}
        secrets = {"broute_id": BROUTE_ID, "broute_password": BROUTE_PASSWORD}
        earlier = seal(SealKey().public_key, secrets, serial="GW-SEC", version=3)
        await agent._apply_settings(Settings(3, 0, {"meter": {**meter, "sealed": earlier}}), None)
        assert agent._events == [] and agent.state.settings is None
        ours = seal(agent.enrollment.seal_key.public_key, secrets, serial="GW-SEC", version=3)
        for broken in (ours[:-4] + "AAAA", "not base64!", ours):  # ours: for version 3 only
            await agent._apply_settings(
                Settings(4, 0, {"meter": {**meter, "sealed": broken}}), None
            )
        assert [e.code for e in agent._events] == ["settings_unreadable"] * 3
        assert agent.status().errors["settings_unreadable"] == 3
        assert agent.state.settings is None and agent.meter is None
        agent.queue.close()

    run(scenario())
