"""The gateway's recipe runtime (`kenshin.gateway.recipes`): what a manifest may not ask for
is refused before a line of the recipe runs; what a recipe asks its context for beyond its
manifest is refused at the call; the other recipes, and the runner, go on. The fetch here
hands packages over directly (the TUF side is `test_recipes_attacks.py`); the ECHONET Lite
node is the PV simulator on real UDP on 127.0.0.x."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kenshin.echonet.udp import EchonetClient
from kenshin.gateway.recipes import (
    RecipePermissionError,
    RecipePolicy,
    RecipeRefused,
    RecipeRunner,
)
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.pv import PvEndpoint, SimulatedPv
from kenshin.updates.recipes import build_package, parse_manifest
from kenshin.wire import Event
from tests.support import eventually, free_udp_port, run

from .test_recipes_manifest import SHIPPED, manifest

PV_HOST = "127.0.0.9"
NOON = datetime(2026, 7, 1, 12, 0, tzinfo=JST)


def client_factory() -> EchonetClient:
    return EchonetClient(host="127.0.0.1", port=0, join_multicast=False, timeout_s=1, attempts=2)


class Packages:
    """What the repository would serve: name → package bytes, as a verified path."""

    def __init__(self, tmp: Path):
        self.tmp, self.fetched = tmp, []

    def put(self, name: str, value: dict[str, Any], code: str) -> None:
        (self.tmp / name).write_bytes(build_package(value, code))

    def fetch(self, name: str) -> Path:
        self.fetched.append(name)
        return self.tmp / name


@contextlib.asynccontextmanager
async def pv_and_runner(tmp_path: Path) -> AsyncIterator[tuple[int, Packages, RecipeRunner, list]]:
    port = free_udp_port(PV_HOST)
    endpoint = PvEndpoint(SimulatedPv(ManualClock(NOON)), host=PV_HOST, port=port)
    await endpoint.start(announce=False)
    packages, events = Packages(tmp_path), []
    runner = RecipeRunner(
        packages.fetch, events.append, "0.1.0", echonet=client_factory, restart_backoff_s=(0.05,)
    )
    try:
        yield port, packages, runner, events
    finally:
        await runner.close()
        endpoint.close()


def of(events: list[Event], code: str) -> list[dict]:
    return [dict(e.detail) for e in events if e.code == code]


def shipped_code() -> str:
    return (SHIPPED / "recipe.py").read_text()


MARK = "open({path!r}, 'w').write('loaded')\n"


@pytest.mark.parametrize(
    ("echonet", "says"),
    [
        ([{"class": "0x0288", "get": ["0xE7"], "set": ["0xE5"]}], "Set on the smart meter"),
        ([{"class": "0x0288", "get": ["0xE7"]}], "Get on class 0x0288: not in the policy"),
        ([{"class": "0x0130", "get": ["0x80"]}], "Get on class 0x0130: not in the policy"),
        ([{"class": "0x0279", "set": ["0xE0"]}], "Set on class 0x0279: not in the policy"),
        ([{"class": "0x027D", "set": ["0xE2"]}], "Set of EPC 0xE2 on class 0x027D"),
        ([{"class": "0x0279", "get": ["0xF5"]}], "Get of EPC 0xF5 on class 0x0279"),
    ],
)
def test_a_manifest_outside_the_policy_is_refused_before_its_code_runs(
    tmp_path: Path, echonet: list, says: str
):
    mark = tmp_path / "loaded"

    async def scenario():
        async with pv_and_runner(tmp_path) as (port, packages, runner, events):
            packages.put(
                "greedy", manifest(name="greedy", echonet=echonet), MARK.format(path=str(mark))
            )
            code = shipped_code()
            packages.put("pv-inverter", manifest(), code)
            opts = {"host": PV_HOST, "port": port, "interval_s": 1}
            runner.want({"greedy": {}, "pv-inverter": opts})
            await eventually(lambda: of(events, "recipe_readings"))
            [refusal] = of(events, "recipe_refused")
            assert refusal["recipe"] == "greedy" and refusal["reason"] == "policy"
            assert says in refusal["error"] and "was not loaded" in refusal["error"]
            assert list(runner.running) == ["pv-inverter"]
            assert runner.summary()["refused"]["greedy"].startswith("policy: ")

    run(scenario())
    assert not mark.exists()  # the refused recipe's module never ran


def test_the_policy_itself_never_grants_set_on_the_smart_meter():
    greedy = parse_manifest(
        b'{"name": "g", "version": "1", "agent": ">=0", "publish": [],'
        b' "echonet": [{"class": "0x0288", "set": ["0xE5"]}]}'
    )
    from kenshin.echonet.classes import Access

    with pytest.raises(RecipeRefused, match="smart meter"):
        RecipePolicy({0x0288: Access.GET | Access.SET}).check(greedy)


OVERREACH = """
import asyncio
from kenshin.gateway.recipes import RecipePermissionError

async def run(ctx):
    host, port = ctx.options["host"], ctx.options["port"]
    refused = []
    for attempt in (
        lambda: ctx.get(host, 0x027901, [0xE3], port=port),      # an EPC not declared
        lambda: ctx.set(host, 0x027901, 0xA0, 50, port=port),    # Set, not declared
        lambda: ctx.get(host, 0x028801, [0xE7], port=port),      # the smart meter
        lambda: ctx.get("8.8.8.8", 0x027901, [0xE0], port=port), # outside the home
    ):
        try:
            await attempt()
        except RecipePermissionError as err:
            refused.append(err.reason)
    try:
        ctx.publish("battery", {"x": 1})                          # a series not declared
    except RecipePermissionError as err:
        refused.append(err.reason)
    values = await ctx.get(host, 0x027901, [0xE0], port=port)    # what it may do, it does
    ctx.publish("pv", {"refused": len(refused), "generation_w": values[0xE0]})
    await asyncio.Event().wait()
"""


def test_a_recipe_asking_its_context_for_more_is_refused_at_each_call_and_goes_on(
    tmp_path: Path,
):
    async def scenario():
        async with pv_and_runner(tmp_path) as (port, packages, runner, events):
            value = manifest(echonet=[{"class": "0x0279", "get": ["0xE0"]}])
            packages.put("pv-inverter", value, OVERREACH)
            runner.want({"pv-inverter": {"host": PV_HOST, "port": port}})
            await eventually(lambda: of(events, "recipe_readings"))
            [readings] = of(events, "recipe_readings")
            assert readings["series"] == "pv" and readings["values"]["refused"] == 5
            assert readings["values"]["generation_w"] == 4000  # noon, a clear sky
            denied = [d["error"] for d in of(events, "recipe_denied")]
            assert len(denied) == 5 and runner.denials == {"pv-inverter": 5}
            assert "Get EPC 0xE3 of class 0x0279" in denied[0]
            assert "Set EPC 0xA0" in denied[1] and "class 0x0288" in denied[2]
            assert "outside the home LAN" in denied[3] and "'battery'" in denied[4]
            assert not of(events, "recipe_failed") and "pv-inverter" in runner.running

    run(scenario())


CRASHES = """
async def run(ctx):
    await ctx.get(ctx.options["host"], 0x027901, [0xE1], port=ctx.options["port"])
"""


def test_a_recipe_that_does_not_catch_a_refusal_fails_and_is_started_again(tmp_path: Path):
    async def scenario():
        async with pv_and_runner(tmp_path) as (port, packages, runner, events):
            value = manifest(echonet=[{"class": "0x0279", "get": ["0xE0"]}])
            packages.put("pv-inverter", value, CRASHES)
            runner.want({"pv-inverter": {"host": PV_HOST, "port": port}})
            await eventually(lambda: len(of(events, "recipe_failed")) >= 2)
            failure = of(events, "recipe_failed")[0]
            assert failure["error"].startswith("RecipePermissionError: recipe pv-inverter")
            assert isinstance(RecipePermissionError("permission", "x", "y"), PermissionError)

    run(scenario())


def test_settings_start_stop_and_refuse_recipes_and_report_what_runs(tmp_path: Path):
    async def scenario():
        async with pv_and_runner(tmp_path) as (port, packages, runner, events):
            packages.put("pv-inverter", manifest(), shipped_code())
            packages.put("future", manifest(name="future", agent=">=9"), shipped_code())
            packages.put("broken", manifest(name="broken"), "def run(ctx): pass\n")
            opts = {"host": PV_HOST, "port": port, "interval_s": 1}
            runner.want({"pv-inverter": opts, "future": {}, "broken": {}, "missing": {}})
            await eventually(lambda: of(events, "recipes"))
            summary = of(events, "recipes")[-1]
            assert summary["running"] == {"pv-inverter": "0.1"}
            refused = summary["refused"]
            assert refused["future"].startswith("agent-version: ")
            assert refused["broken"].startswith("load: ") and "async def run" in refused["broken"]
            assert refused["missing"].startswith("io: ")  # nothing at that path
            await eventually(lambda: of(events, "recipe_readings"))
            first = of(events, "recipe_readings")[0]
            assert first["values"] == {"generation_w": 4000, "cumulative_wh": 1_234_000}
            runner.want({})  # the settings no longer name them
            await eventually(lambda: of(events, "recipes")[-1] == {"running": {}, "refused": {}})
            assert not runner.running

    run(scenario())


def test_without_an_update_channel_every_recipe_is_refused(tmp_path: Path):
    events: list[Event] = []

    async def scenario():
        runner = RecipeRunner.for_agent(None, "0.1.0", events.append)
        runner.want({"pv-inverter": {}})
        await eventually(lambda: of(events, "recipes"))
        await runner.close()

    run(scenario())
    assert of(events, "recipe_refused")[0]["reason"] == "no-channel"


def test_a_refusal_is_reported_once_and_only_a_recipe_not_fetched_is_tried_again(
    tmp_path: Path,
):
    async def scenario():
        async with pv_and_runner(tmp_path) as (port, packages, runner, events):
            greedy = [{"class": "0x0288", "set": ["0xE5"]}]
            packages.put("greedy", manifest(name="greedy", echonet=greedy), "")
            runner.want({"greedy": {}, "later": {}})
            await eventually(lambda: of(events, "recipes"))
            assert runner._unavailable == {"later"}  # nothing at that path yet: again later
            await runner.reconcile()  # the retry (or any settings change) refetches both
            assert len(of(events, "recipe_refused")) == 2  # the same refusals: no news
            packages.put("later", manifest(name="later"), shipped_code())
            runner._wanted["later"] = {"host": PV_HOST, "port": port, "interval_s": 1}
            await runner.reconcile()
            assert list(runner.running) == ["later"] and not runner._unavailable
            assert of(events, "recipes")[-1]["refused"].keys() == {"greedy"}

    run(scenario())
