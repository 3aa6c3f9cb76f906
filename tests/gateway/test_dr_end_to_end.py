"""Issue 20's "Done when", end to end: 20 simulated homes and their gateways, a retailer's
demand-response event for 17:00-19:00 made through the API, and its measured reduction.

One server (HTTP on a free port, the embedded broker, PostgreSQL) and, in the same
process, 20 real `GatewayAgent`s enrolled with claim codes. Each home is a simulated smart
meter on its own loopback address (127.0.7x.1) with, each on an address of its own behind
it (`SimulatedMeter.attach`: their power is in the meter's registers), a storage battery,
an air conditioner, an EV charger and, in every other home, a water heater. A gateway
knows its meter from its settings and its devices from their `dr.lan.hosts`.

Time is a `ManualClock` shared by the meters, the devices and the agents, moved a minute
at a time; after each step the test waits until every task it woke sleeps again, so each
read and each Set is made at the minute it is due (the Sets at 17:00:00 exactly). The
event day is the next working day after today: the server keeps its own (real) clock, and
an event must start in its future. The day's history comes through the real pipeline: the
gateways start at 12:30 with `poll.initial_backfill_days` reaching back to the fifth like
day, read it from their meters' history (E5/E2) and send it; the event day's 13:00-19:00
(the same-day adjustment's window, then the event's slots) is read live, half hour by
half hour. No energy is written into the database by the test. (The gateways' queues
live in /dev/shm where there is one: see QUEUES.)

The test then checks, each figure computed on its own from the simulators:
- every home acknowledged the event, its devices were set at 17:00 (battery discharging,
  air conditioner up to 28 °C with power saving, EV paused, water heater held), the EV
  resumed at 18:00 (its policy's hour) and everything was restored at 19:00; every home
  reported and is `done`;
- in each event slot each meter counted exactly what a twin meter with the same house and
  untouched devices counted, less the devices' drop by their models (watt-seconds);
- the results' baseline, actual and reduction per home and slot equal the test's own
  High 4 of 5 with the same-day adjustment over the meters' registers (slot Wh: the
  cumulative register's differences), to the Wh, before the event is final and after
  the dr job (run at the simulated 19:05) made it final.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import math
import tempfile
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from fractions import Fraction
from pathlib import Path

import httpx
import jpholiday
import pytest
from sqlalchemy import func, select

from kenshin.echonet import edt as e
from kenshin.echonet.classes import AirconMode, BatteryMode, EvMode, PowerSaving, WaterHeating
from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.server import schema as s
from kenshin.server.bootstrap import create_tenant, create_user, ensure_admin
from kenshin.server.dr import tables as dr_tables
from kenshin.server.dr.job import run_dr
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.devices import DeviceEndpoint, SimulatedDevice
from kenshin.sim.home import (
    AirconConfig,
    BatteryConfig,
    EvConfig,
    SimulatedAircon,
    SimulatedBattery,
    SimulatedEvCharger,
    SimulatedWaterHeater,
    WaterHeaterConfig,
)
from kenshin.sim.meter import MeterConfig, MeterEndpoint, SimulatedMeter
from kenshin.wire.enrollment import b64encode
from tests.gateway.test_end_to_end import ADMIN, OPERATOR, PASSWORD, login, server
from tests.support import eventually, free_udp_port, run

pytestmark = pytest.mark.slow  # the whole stack, 20 homes

HOMES = 20
SLOT = timedelta(minutes=30)
MINUTE = timedelta(minutes=1)
TARGETS_W = [1_000_000, 1_000_000, 800_000, 800_000]  # the tenant's, a slot: every device
POLICY = {"battery": {"max_discharge_w": 600, "min_soc_percent": 20},
          "ev": {"max_pause_minutes": 60}, "water_heater": {"max_hold_minutes": 120}}  # fmt: skip
OUTDOOR_C = 33.0  # the air conditioners' outdoor air, whatever the season of the run
MODULUS = 10**8  # 8 digits of 1 Wh
# The gateways' durable queues (SQLite, synchronous=FULL: an fsync a 30-minute value put).
# Real gateways each have their own storage; 20 of them in one event loop on one disk would
# wait for each other's fsyncs (the backfill of a loaded machine took minutes), so their
# queues live in memory where there is /dev/shm.
QUEUES = Path("/dev/shm")


def event_day(today: date) -> date:
    """The first working day after `today`: a weekday event, High 4 of 5."""
    day = today + timedelta(days=1)
    while not working(day):
        day += timedelta(days=1)
    return day


def working(day: date) -> bool:
    return day.weekday() < 5 and not jpholiday.is_holiday(day)


def like_days(day: date) -> list[date]:
    """The 5 most recent working days before `day`, newest first."""
    days, back = [], day
    while len(days) < 5:
        back -= timedelta(days=1)
        if working(back):
            days.append(back)
    return days


class Home:
    """A meter and its devices on loopback addresses of their own, and a twin: the same
    house with the same devices never set (not on the network)."""

    def __init__(self, index: int, clock: ManualClock):
        self.index = index
        net = f"127.0.{70 + index}"
        self.meter_host = f"{net}.1"
        self.port = free_udp_port(self.meter_host)
        config = MeterConfig(seed=500 + index, pv=False, unit=e.EnergyUnit.KWH_0_001, digits=8)
        self.meter, self.twin = SimulatedMeter(clock, config), SimulatedMeter(clock, config)
        self.heater = index % 2 == 0
        self.devices = self._devices(clock)
        for device, twin_device in zip(self.devices, self._devices(clock), strict=True):
            self.meter.attach(device)
            self.twin.attach(twin_device)
        self.hosts = [f"{net}.{2 + k}" for k in range(len(self.devices))]
        self.endpoints = [MeterEndpoint(self.meter, host=self.meter_host, port=self.port)]
        self.endpoints += [
            DeviceEndpoint(d, host=h, port=self.port)
            for d, h in zip(self.devices, self.hosts, strict=True)
        ]
        self.site_id = 0

    def _devices(self, clock: ManualClock) -> list[SimulatedDevice]:
        devices: list[SimulatedDevice] = [
            SimulatedBattery(clock, BatteryConfig(stored_wh=8_000), identity=self.index),
            SimulatedAircon(
                clock,
                AirconConfig(mode=AirconMode.COOLING, setpoint_c=26, outdoor_c=lambda _: OUTDOOR_C),
                identity=self.index,
            ),
            SimulatedEvCharger(
                clock,
                EvConfig(rated_w=3_000, wanted_wh=30_000, vehicle_capacity_wh=60_000),
                identity=self.index,
            ),
        ]
        if self.heater:  # heats 13:00-20:00 unless held
            config = WaterHeaterConfig(heater_w=1_500, stored_wh=2_000, afternoon=(13.0, 20.0))
            devices.append(SimulatedWaterHeater(clock, config, identity=self.index))
        return devices

    @property
    def battery(self) -> SimulatedBattery:
        return self.devices[0]  # type: ignore[return-value]

    @property
    def aircon(self) -> SimulatedAircon:
        return self.devices[1]  # type: ignore[return-value]

    @property
    def ev(self) -> SimulatedEvCharger:
        return self.devices[2]  # type: ignore[return-value]

    def dr_values(self) -> dict:
        lan = {"hosts": self.hosts, "port": self.port, "bind": "127.0.0.1",
               "discover_timeout_s": 0.3}  # fmt: skip
        return {"dr": {**POLICY, "lan": lan}}

    def state(self) -> tuple:
        b, a, ev = self.battery.object, self.aircon.object, self.ev.object
        out = (b.value(0xDA), b.value(0xEC), a.value(0xB3), a.value(0x8F), ev.value(0xDA))
        return out + ((self.devices[3].object.value(0xB0),) if self.heater else ())

    def acting(self, ev_paused: bool) -> tuple:
        ev = EvMode.STANDBY if ev_paused else EvMode.CHARGING
        out = (BatteryMode.DISCHARGING, 600, 28, PowerSaving.SAVING, ev)
        return out + ((WaterHeating.MANUAL_STOP,) if self.heater else ())

    def restored(self) -> tuple:
        out = (BatteryMode.STANDBY, 3000, 26, PowerSaving.NORMAL, EvMode.CHARGING)
        return out + ((WaterHeating.AUTO,) if self.heater else ())


def slot_wh(meter: SimulatedMeter, slot: datetime) -> int:
    """A half hour's Wh as the meter's cumulative register counts it (E1 = 1 Wh)."""
    before, after = meter.registers.raw(slot)[0], meter.registers.raw(slot + SLOT)[0]
    return (after - before) % MODULUS


def slot_ws(meter: SimulatedMeter, slot: datetime) -> int:
    """The same, exactly: watt-seconds."""
    return meter.registers.energy_ws(slot + SLOT)[0] - meter.registers.energy_ws(slot)[0]


def standard_baseline(meter: SimulatedMeter, day: date, slots: list[datetime]) -> list[int]:
    """The test's own ERAB standard baseline for a weekday: of the 5 like days, the 4 with
    the most energy over the event's slots, their mean per slot, plus the event day's mean
    over 13:00-16:00 (3 hours ending 1 hour before the start) less the kept days' mean
    there; floored at 0, rounded half up. No DR day and, as asserted, no low day here."""
    days = like_days(day)

    def on(d: date, slot: datetime) -> datetime:
        return slot - (day - d)

    totals = {d: sum(slot_wh(meter, on(d, slot)) for slot in slots) for d in days}
    mean = Fraction(sum(totals.values()), len(days))
    assert all(total >= mean / 4 for total in totals.values())  # no day under 25 % of the mean
    kept = sorted(days, key=lambda d: (-totals[d], day - d))[:4]  # ties: the oldest drops

    def kept_mean(slot: datetime) -> Fraction:
        return Fraction(sum(slot_wh(meter, on(d, slot)) for d in kept), 4)

    window = [slots[0] - timedelta(hours=4) + k * SLOT for k in range(6)]
    adjustment = (
        Fraction(sum(slot_wh(meter, w) for w in window), 6)
        - sum((kept_mean(w) for w in window), Fraction(0)) / 6
    )
    return [math.floor(max(kept_mean(slot) + adjustment, 0) + Fraction(1, 2)) for slot in slots]


async def walk(clock: ManualClock, until: datetime, sleepers: int) -> None:
    """Move the simulated time a minute at a time to `until`; after each step, wait until
    `sleepers` tasks sleep on the clock again (the pollers' two loops a gateway, and a DR
    runner's wait while an event is under way): whatever the step woke has done its work
    at that minute."""
    while clock.now() < until:
        clock.set(min(clock.now() + MINUTE, until))
        try:
            await asyncio.wait_for(clock.until_sleepers(sleepers), 30)
        except TimeoutError:
            raise AssertionError(
                f"at {clock.now():%H:%M} {clock.sleepers} tasks sleep, not {sleepers}"
            ) from None


async def until(condition: Callable[[], bool], timeout_s: float, say: Callable[[], str]) -> None:
    """`eventually`, saying what stood where when it did not come."""
    try:
        await eventually(condition, timeout_s=timeout_s)
    except AssertionError:
        raise AssertionError(say()) from None


def test_an_event_for_twenty_homes_sets_their_devices_and_is_measured_exactly(
    tmp_path, postgres_url
):
    day = event_day(datetime.now(JST).date())
    start = datetime.combine(day, time(17), JST)
    end = start + 4 * SLOT
    slots = [start + k * SLOT for k in range(4)]
    attach = datetime.combine(day, time(12, 30), JST)  # devices on, gateways started
    backfill_days = (day - like_days(day)[-1]).days
    history = backfill_days * 48 + 1  # 30-minute values a meter's backfill gives

    async def scenario():
        async with server(postgres_url, "embedded", tmp_path) as (app, base):
            engine = app.state.engine
            ensure_admin(engine, ADMIN, PASSWORD)
            tenant = create_tenant(engine, "Denryoku Co.", "retailer")
            create_user(engine, tenant, OPERATOR, PASSWORD, role="operator")
            clock = ManualClock(attach)
            homes = [Home(i, clock) for i in range(HOMES)]
            identities = [Identity.generate(f"GW-DR{i:02}", base) for i in range(HOMES)]
            codes = [new_claim_code() for _ in identities]
            rows = io.StringIO()
            writer = csv.writer(rows)
            writer.writerow(["serial", "model", "public_key", "claim_code"])
            for identity, code in zip(identities, codes, strict=True):
                writer.writerow(
                    [identity.serial, "kenshin-gw", b64encode(identity.public_key), code]
                )
            async with httpx.AsyncClient(base_url=base) as root:
                await login(root, ADMIN)
                answer = await root.post(
                    "/api/v1/gateways/import",
                    content=rows.getvalue(),
                    headers={"content-type": "text/csv"},
                )
                assert answer.json()["added"] == HOMES, answer.text

            async with httpx.AsyncClient(base_url=base, timeout=30) as ops:
                await login(ops, OPERATOR)
                poll = {"instant_interval_s": 300, "initial_backfill_days": backfill_days}
                answer = await ops.patch(
                    "/api/v1/settings/default", json={"values": {"poll": poll}}
                )
                assert answer.status_code == 200, answer.text
                for home, code in zip(homes, codes, strict=True):
                    site = (
                        await ops.post(
                            "/api/v1/sites",
                            json={"customer_id": f"C-{home.index:03}",
                                  "service_code": f"pss{home.index + 1:08}"},
                        )
                    ).json()  # fmt: skip
                    home.site_id = site["id"]
                    gateway = (
                        await ops.post(
                            "/api/v1/gateways/claim",
                            json={"claim_code": code, "site_id": site["id"]},
                        )
                    ).json()
                    answer = await ops.patch(
                        f"/api/v1/gateways/{gateway['id']}/settings",
                        json={"values": home.dr_values()},
                    )
                    assert answer.status_code == 200, answer.text
                    answer = await ops.post(
                        "/api/v1/meters",
                        json={"site_id": site["id"], "gateway_id": gateway["id"], "link": "udp",
                              "udp_host": home.meter_host, "udp_port": home.port},
                    )  # fmt: skip
                    assert answer.status_code == 201, answer.text

                agents, tasks = [], []
                queues = tempfile.TemporaryDirectory(dir=QUEUES if QUEUES.is_dir() else tmp_path)
                try:
                    for home in homes:
                        for endpoint in home.endpoints:
                            await endpoint.start(announce=False)
                    for i, identity in enumerate(identities):
                        options = AgentOptions(queue_path=Path(queues.name) / f"gw{i}" / "q.db")
                        agents.append(GatewayAgent(identity, options, clock=clock))
                    tasks = [asyncio.create_task(agent.run_forever()) for agent in agents]
                    await run_the_day(ops, engine, clock, homes)
                finally:
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                    for home in homes:
                        for endpoint in home.endpoints:
                            endpoint.close()
                    queues.cleanup()

    async def run_the_day(ops, engine, clock, homes) -> None:
        fixed = s.readings_fixed.c
        parts = dr_tables.dr_participations.c

        def values_stored() -> int:
            with engine.connect() as conn:
                count = select(func.count()).where(fixed.direction == 0)
                return conn.execute(count.select_from(s.readings_fixed)).scalar_one()

        # Every gateway enrolled, configured itself, read its meter's history and sent it;
        # its poller waits for the next minute due.
        await until(
            lambda: clock.sleepers == 2 * HOMES and values_stored() == HOMES * history,
            60,
            lambda: f"{clock.sleepers} asleep, {values_stored()} of {HOMES * history} values",
        )

        made = await ops.post(
            "/api/v1/dr/events",
            json={"name": "夕方の節電", "start": start.isoformat(), "end": end.isoformat(),
                  "targets_w": TARGETS_W},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        event_id = made.json()["id"]

        def states() -> list[str]:
            with engine.connect() as conn:
                query = select(parts.state).where(parts.event_id == event_id)
                return list(conn.execute(query).scalars())

        # Sent by the pushers, acked by every gateway, whose DR runner waits for 17:00.
        await until(
            lambda: clock.sleepers == 3 * HOMES and states() == ["acknowledged"] * HOMES,
            60,
            lambda: f"{clock.sleepers} asleep, homes {sorted(states())}",
        )
        answer = await ops.get(f"/api/v1/dr/events/{event_id}/homes")
        assert answer.status_code == 200, answer.text
        listed = answer.json()["items"]
        assert {h["site_id"]: (h["state"], h["devices"]) for h in listed} == {
            home.site_id: ("acknowledged", {"count": len(home.devices)}) for home in homes
        }
        # The tenant's target, split over the homes by their baselines, adds up exactly.
        assert [sum(h["targets_w"][k] for h in listed) for k in range(4)] == TARGETS_W
        assert all(home.state() == home.restored() for home in homes)

        await walk(clock, start, 3 * HOMES)  # 17:00: every runner set its devices
        assert [home.state() for home in homes] == [home.acting(True) for home in homes]
        await walk(clock, start + 2 * SLOT, 3 * HOMES)  # 18:00: the EVs' hour is up
        assert [home.state() for home in homes] == [home.acting(False) for home in homes]
        await walk(clock, end, 2 * HOMES)  # 19:00: the runners restore, report and end
        await until(
            lambda: all(home.state() == home.restored() for home in homes),
            60,
            lambda: f"not restored: {[h.index for h in homes if h.state() != h.restored()]}",
        )
        await walk(clock, end + 5 * MINUTE, 2 * HOMES)  # the 19:00 values read
        live = history + 13  # 13:00 to 19:00, read half hour by half hour
        await until(
            lambda: values_stored() == HOMES * live and states() == ["done"] * HOMES,
            60,
            lambda: f"{values_stored()} of {HOMES * live} values, homes {sorted(states())}",
        )

        # The B-route registers: until 17:00 each meter counted what its twin did; in each
        # slot of the event exactly less the devices' drop by their models.
        model_w = homes[0].aircon.model_w
        saved_w = (
            600
            + model_w(OUTDOOR_C, 26, AirconMode.COOLING, False)
            - model_w(OUTDOOR_C, 28, AirconMode.COOLING, True)
        )  # the battery's 600 W, and 1,090 W down to 632 W for the air conditioner
        for home in homes:
            assert home.meter.registers.energy_ws(start) == home.twin.registers.energy_ws(start)
            drops = [slot_ws(home.twin, slot) - slot_ws(home.meter, slot) for slot in slots]
            held = saved_w + (1_500 if home.heater else 0)
            assert drops == [(held + 3_000) * 1800] * 2 + [held * 1800] * 2, home.index

        # The results: per home and slot, the test's baseline minus the register's actual.
        answer = await ops.get(f"/api/v1/dr/events/{event_id}/results")
        assert answer.status_code == 200, answer.text
        measured = answer.json()
        assert measured["final"] is False  # the server's clock has not reached the event
        expected = {}
        for home in homes:
            baseline = standard_baseline(home.meter, day, slots)
            actual = [slot_wh(home.meter, slot) for slot in slots]
            expected[home.site_id] = {
                "state": "done", "status": "measured", "baseline_wh": sum(baseline),
                "actual_wh": sum(actual), "reduction_wh": sum(baseline) - sum(actual),
                "slots": [(b, a, b - a) for b, a in zip(baseline, actual, strict=True)],
            }  # fmt: skip

        def per_home(doc: dict) -> dict:
            return {
                h["site_id"]: {
                    "state": h["state"], "status": h["status"], "baseline_wh": h["baseline_wh"],
                    "actual_wh": h["actual_wh"], "reduction_wh": h["reduction_wh"],
                    "slots": [(x["baseline_wh"], x["actual_wh"], x["reduction_wh"])
                              for x in h["slots"]],
                }
                for h in doc["homes"]
            }  # fmt: skip

        assert per_home(measured) == expected
        total = sum(h["reduction_wh"] for h in expected.values())
        assert measured["totals"]["reduction_wh"] == total
        assert total > 0  # the same-day adjustment counts the devices running since 12:30
        assert [x["reduction_wh"] for x in measured["slots"]] == [
            sum(h["slots"][k][2] for h in expected.values()) for k in range(4)
        ]

        # The dr job, at the simulated 19:05: the event ends and its results are final.
        await asyncio.to_thread(run_dr, engine, clock.now())
        final = (await ops.get(f"/api/v1/dr/events/{event_id}/results")).json()
        assert final["final"] is True
        assert per_home(final) == expected and final["totals"] == measured["totals"]

    run(scenario(), timeout_s=240)
