"""Issue 19's recipe attacks against a running agent: the real `GatewayAgent` (enrolled on
the test cloud's broker, reading a simulated smart meter over UDP) with its update channel
on the `world` repository, served by the real server app over HTTP. Recipes are enabled
through the settings; each attack is refused, reported as an Event, and the agent goes on:
the meter is still read and the good recipe (the shipped PV recipe reading the PV
simulator on 127.0.0.x) still publishes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner

from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity
from kenshin.gateway.updater import UpdateSetup
from kenshin.sim.clock import JST, ScaledClock
from kenshin.sim.fleet import SimFleet
from kenshin.sim.meter import MeterConfig
from kenshin.sim.pv import PvEndpoint, SimulatedPv
from kenshin.updates.client import UpdateRefused
from kenshin.updates.keys import load_signer
from kenshin.updates.recipes import CODE, MANIFEST, build_package
from kenshin.wire import Event, ReadingsBatch, Settings
from tests.gateway.cloud import Cloud
from tests.support import eventually, free_udp_port, run

from .conftest import World
from .test_attacks import forged_targets
from .test_recipes_manifest import SHIPPED, manifest

SERIAL = "GW-R"
PV_HOST = "127.0.0.10"
METER_HOST = "127.0.1.1"


def publish(world: World, name: str, package: bytes) -> None:
    path = world.tmp / f"{name}.recipe"
    path.write_bytes(package)
    world.repo.add_recipe(path, name)


def shipped() -> bytes:
    return build_package((SHIPPED / MANIFEST).read_bytes(), (SHIPPED / CODE).read_bytes())


def events(cloud: Cloud, code: str) -> list[dict[str, Any]]:
    return [dict(e.detail) for e in cloud.of(Event) if e.code == code]


def refused(cloud: Cloud, name: str) -> dict[str, Any] | None:
    return next((d for d in events(cloud, "recipe_refused") if d["recipe"] == name), None)


class Home:
    def __init__(self, cloud: Cloud, service, agent: GatewayAgent, values: dict[str, Any]):
        self.cloud, self.service, self.agent, self.values = cloud, service, agent, values
        self.version = 1

    async def settings(self, recipes: dict[str, Any]) -> None:
        self.version += 1
        values = dict(self.values, recipes=recipes)
        settings = Settings(self.version, int(time.time()), values)
        await self.cloud.send(self.service, settings, SERIAL, retain=True)

    def samples(self) -> int:
        return sum(len(batch.instant) for batch in self.cloud.of(ReadingsBatch))

    async def still_running(self) -> None:
        """The meter is still read and sent, and the PV recipe still publishes."""
        sent, pv = self.samples(), len(events(self.cloud, "recipe_readings"))
        await eventually(lambda: self.samples() > sent, timeout_s=10)
        await eventually(lambda: len(events(self.cloud, "recipe_readings")) > pv, timeout_s=10)


@contextlib.asynccontextmanager
async def home(world: World, tmp_path: Path) -> AsyncIterator[Home]:
    clock = ScaledClock(datetime(2026, 7, 1, 11, 0, tzinfo=JST), speed=20.0)
    meter_port, pv_port = free_udp_port(METER_HOST), free_udp_port(PV_HOST)
    meter = {"link": "udp", "host": METER_HOST, "port": meter_port, "ref": "m1"}
    values = {"meter": meter, "poll": {"instant_interval_s": 2}, "uplink": {"max_delay_s": 0.2}}
    root, state = tmp_path / "install", tmp_path / "gw-state"
    root.mkdir()
    state.mkdir()
    shutil.copy(world.repo.metadata_dir / "1.root.json", state / "initial-root.json")
    setup = UpdateSetup(root, state, state / "initial-root.json", world.url)
    options = AgentOptions(tmp_path / "q.db", restart_backoff_s=(0.05, 0.1), updates=setup)
    pv = PvEndpoint(SimulatedPv(clock), host=PV_HOST, port=pv_port)
    await pv.start(announce=False)
    try:
        async with (
            SimFleet(1, clock, port=meter_port, config=MeterConfig(seed=5)) as _,
            Cloud() as cloud,
            cloud.service() as service,
        ):
            await cloud.send(service, Settings(1, int(time.time()), values), SERIAL, retain=True)
            agent = GatewayAgent(Identity.generate(SERIAL, cloud.url), options, clock=clock)
            running = asyncio.create_task(agent.run_forever())
            try:
                house = Home(cloud, service, agent, values)
                house.pv_options = {"host": PV_HOST, "port": pv_port, "interval_s": 1}
                yield house
            finally:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
    finally:
        pv.close()


def test_recipe_attacks_are_refused_and_the_agent_goes_on(world: World, tmp_path: Path):
    publish(world, "pv-inverter", shipped())
    smart_meter_set = [{"class": "0x0288", "get": ["0xE7"], "set": ["0xE5"]}]
    publish(world, "meter-writer", build_package(
        manifest(name="meter-writer", echonet=smart_meter_set), "async def run(ctx): pass\n"
    ))  # fmt: skip

    async def scenario():
        async with home(world, tmp_path) as house:
            # The good recipe, signed by the recipes role, enabled by settings: it runs.
            await house.settings({"pv-inverter": house.pv_options, "meter-writer": {}})
            await eventually(lambda: events(house.cloud, "recipe_readings"), timeout_s=15)
            reading = events(house.cloud, "recipe_readings")[0]
            assert reading["recipe"] == "pv-inverter" and reading["series"] == "pv"
            assert reading["values"]["generation_w"] > 0  # 11:00 JST, a clear sky
            # A manifest asking for Set on the smart meter: refused before loading.
            await eventually(lambda: events(house.cloud, "recipes"), timeout_s=15)
            assert refused(house.cloud, "meter-writer")["reason"] == "policy"
            summary = events(house.cloud, "recipes")[-1]
            assert summary["running"] == {"pv-inverter": "0.1"}
            assert "Set on the smart meter" in summary["refused"]["meter-writer"]
            await house.still_running()

            # A recipe signed by a key the targets role never delegated to.
            stranger = CryptoSigner.generate_ed25519()
            forged_targets(world, "recipes", "recipes/evil", shipped(), stranger)
            await house.settings({"pv-inverter": house.pv_options, "evil": {}})
            await eventually(lambda: refused(house.cloud, "evil") is not None, timeout_s=15)
            assert refused(house.cloud, "evil")["reason"] == "signature"
            await house.still_running()
            assert "evil" not in house.agent.recipes.running

    run(scenario(), timeout_s=60)


def test_a_recipe_signed_by_the_release_key_instead_of_the_recipes_role_is_refused(
    world: World,
):
    world.release("1.0")
    targets_key = load_signer(world.keys, "targets", world.repo.keyids("targets"))
    forged_targets(world, "targets", "recipes/sneaky", shipped(), targets_key)
    with pytest.raises(UpdateRefused) as refusal:
        world.client().fetch_recipe("sneaky")
    assert refusal.value.reason == "delegation"
    # A recipe the recipes role signs is still taken beside it.
    publish(world, "pv-inverter", shipped())
    assert world.client().fetch_recipe("pv-inverter").read_bytes() == shipped()


def test_the_recipes_key_cannot_sign_outside_recipes(world: World):
    """A path outside recipes/* (a release) signed by the recipes key is never a recipe:
    `fetch_recipe` only ever looks up recipes/<name>, and names cannot climb out."""
    from kenshin.updates.names import TargetNameError

    for name in ("../releases/1.0.tar", "a/b", ""):
        with pytest.raises(TargetNameError):
            world.client().fetch_recipe(name)
