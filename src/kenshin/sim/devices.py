"""What controllable home devices share: power that is constant between known moments.

A simulated device (`home.py`: storage battery, EV charger, air conditioner, water heater)
draws a whole number of watts that changes only at moments its model can name: a Set from
a controller, a state of charge reaching a limit, a schedule's edge, a new half hour of
outdoor temperature. `SimulatedDevice` walks its state from one such moment to the next
(`settle`), keeping every change as a segment, so that:

- its state (a battery's stored energy, a tank's heat) is integrated exactly, in W·µs;
- anyone may ask what it drew at any past moment (`power_w`, `segments`), which is how the
  simulated smart meter adds the devices to what it counts (`registers.MeterRegisters.attach`).

Power is signed as the meter sees it: positive draws from the grid, negative (a battery
discharging) feeds the house. Nothing happens before the device was made (0 W).
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta

from kenshin.echonet import edt as e
from kenshin.echonet.device import LocalNode, LocalObject, PropertyRefused
from kenshin.echonet.frame import EOJ
from kenshin.echonet.udp import EchonetDeviceEndpoint

from .clock import JST, Clock
from .registers import epoch_us

US = 1_000_000  # microseconds a second
WUS_PER_WH = 3600 * US  # W·µs in a watt-hour
SIM_MANUFACTURER = 0xFFFFFE  # not a registered maker


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def hour_of_day(moment: datetime) -> float:
    local = moment.astimezone(JST)
    return local.hour + local.minute / 60 + (local.second + local.microsecond / US) / 3600


def next_hour_edge(moment: datetime, hours: tuple[float, ...]) -> datetime:
    """The first moment after `moment` whose JST hour of day is one of `hours`."""
    local = moment.astimezone(JST)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    candidates = [
        midnight + timedelta(days=d, seconds=round(h * 3600)) for d in (0, 1) for h in hours
    ]
    return min(c for c in candidates if c > local)


def in_window(hour: float, window: tuple[float, float]) -> bool:
    """[start, end) in hours of the day; a window may run over midnight (23 to 7)."""
    start, end = window
    return start <= hour < end if start <= end else hour >= start or hour < end


class SimulatedDevice:
    """Base of the simulated devices: an ECHONET Lite object, a node serving it, and the
    piecewise-constant power timeline. Subclasses give `_power` (watts from the state at
    `self.at`), `_next_change` (the next moment the power changes by itself, or None) and
    `_integrate` (move the state over `us` microseconds at `watts`)."""

    def __init__(self, clock: Clock, eoj: EOJ, identity: int):
        self.clock = clock
        self.at = clock.now()
        self.object = LocalObject(eoj)
        obj = self.object
        obj.set_value(0x81, b"\x00")
        obj.set_value(0x82, e.StandardVersion("J"))
        obj.set_value(0x88, e.FaultStatus.NO_FAULT)
        obj.set_value(0x8A, SIM_MANUFACTURER)
        self._times: list[int] = []  # epoch µs where each segment starts
        self._watts: list[int] = []
        self._identity = identity

    def _serve_node(self) -> None:
        """Call once the subclass has bound its properties: the maps come from them."""
        ident = b"\xfe" + SIM_MANUFACTURER.to_bytes(3, "big") + self._identity.to_bytes(13, "big")
        self.node = LocalNode([self.object], manufacturer_code=SIM_MANUFACTURER,
                              identification=ident)  # fmt: skip
        self._record()

    # -- the subclass's model --------------------------------------------------------------

    def _power(self) -> int:
        raise NotImplementedError

    def _next_change(self) -> datetime | None:
        return None

    def _integrate(self, us: int, watts: int) -> None:
        """Most devices keep no state that power moves."""

    # -- the timeline ------------------------------------------------------------------------

    def _record(self) -> None:
        watts = self._power()
        if not self._watts or self._watts[-1] != watts:
            self._times.append(epoch_us(self.at))
            self._watts.append(watts)

    def settle(self) -> None:
        """Walk the state up to the clock's now, one constant-power stretch at a time."""
        now = self.clock.now()
        while self.at < now:
            change = self._next_change()
            if change is not None and change <= self.at:
                change = None  # a model's edge already passed: nothing more changes by itself
            until = now if change is None or change > now else change
            self._integrate(epoch_us(until) - epoch_us(self.at), self._watts[-1])
            self.at = until
            self._record()

    def changed(self) -> None:
        """After a Set changed the settings (the state was settled first)."""
        self._record()

    def setter(self, apply):
        """A Set handler: settle, decode, apply (may raise PropertyRefused), record."""

        def handle(value) -> None:
            self.settle()
            apply(value)
            self.changed()

        return handle

    def power_w(self, moment: datetime | None = None) -> int:
        """What it draws at `moment` (default now), W; 0 before it existed."""
        self.settle()
        at = epoch_us(self.clock.now() if moment is None else moment)
        i = bisect.bisect_right(self._times, at) - 1
        return self._watts[i] if i >= 0 else 0

    def segments(self, start_us: int, end_us: int) -> list[tuple[int, int]]:
        """(from µs, watts) covering [start_us, end_us): the power at the start, then every
        change inside. Past the clock's now the last power is taken to go on."""
        self.settle()
        i = bisect.bisect_right(self._times, start_us) - 1
        out = [(start_us, self._watts[i] if i >= 0 else 0)]
        for j in range(i + 1, len(self._times)):
            if self._times[j] >= end_us:
                break
            out.append((self._times[j], self._watts[j]))
        return out

    # -- serving properties ------------------------------------------------------------------

    def serve(self, epc: int, read, write=None, *, check=None) -> None:
        """Bind `epc` to `read() -> typed value` and, when settable, `write(typed value)`."""
        codec = self.object.spec.properties[epc].codec

        def get() -> bytes:
            self.settle()
            return codec.encode(read())

        set_ = None
        if write is not None:
            apply = self.setter(write)

            def set_(edt: bytes) -> None:
                value = codec.decode(edt)
                if check is not None and not check(value):
                    raise PropertyRefused(f"0x{epc:02X}: {value!r} not accepted")
                apply(value)

        self.object.bind(epc, get=get, set=set_)


class DeviceEndpoint(EchonetDeviceEndpoint):
    """A simulated device answering on UDP (127.0.0.x in tests), like `PvEndpoint`."""

    def __init__(self, device: SimulatedDevice, **kwargs):
        super().__init__(device.node, **kwargs)
        self.device = device
