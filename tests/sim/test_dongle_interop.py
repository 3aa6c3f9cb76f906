"""An independent B-route library (momonga, on PyPI) pointed at the emulator's pty works
unchanged: it scans, joins, switches ERXUDP to hex as it likes, and reads the meter."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import pytest

momonga = pytest.importorskip("momonga")

from kenshin.sim.clock import JST, ScaledClock  # noqa: E402
from kenshin.sim.dongle import DongleEmulator, DongleModel  # noqa: E402
from kenshin.sim.meter import MeterConfig, SimulatedMeter  # noqa: E402

pytestmark = pytest.mark.slow  # a third-party library through the emulated dongle

RBID = "00112233445566778899AABBCCDDEEFF"
PWD = "0123456789AB"


class EmulatorThread:
    """The emulator's event loop in a thread: momonga is a blocking, threaded library."""

    def __init__(self, model: DongleModel):
        self.model = model
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> DongleEmulator:
        self.thread.start()
        clock = ScaledClock(datetime(2026, 5, 1, 12, 0, tzinfo=JST))
        meter = SimulatedMeter(clock, MeterConfig(seed=7, pv=True))
        self.emulator = DongleEmulator(meter, model=self.model, route_b_id=RBID, password=PWD)
        asyncio.run_coroutine_threadsafe(self.emulator.start(), self.loop).result(5)
        return self.emulator

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.emulator.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.mark.parametrize("model", list(DongleModel), ids=lambda m: m.value)
def test_momonga_reads_the_emulated_meter(model):
    with EmulatorThread(model) as emulator:
        meter = momonga.Momonga(RBID, PWD, emulator.path)
        meter.internal_xmit_interval = 0  # its pacing for real radios; the pty needs none
        with meter:
            power = meter.get_instantaneous_power()
            energy = meter.get_measured_cumulative_energy()
        registers = emulator.meter.registers
        now = emulator.meter.clock.now()
        assert abs(power - registers.instant_power_w(now)) < 2000
        assert isinstance(energy, (int, float)) and energy > 0
        assert emulator.joins == 1
