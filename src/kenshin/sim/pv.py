"""A simulated home solar power generation unit (PV inverter, 0x027901) on the home LAN.

What the class registry describes, served by the device role: operation status (0x80),
grid connection (0xD0), instantaneous generation in W (0xE0) and cumulative generation in
0.001 kWh (0xE1). The sun is a half sine between `sunrise_h` and `sunset_h` JST, scaled to
`peak_w` and dimmed by `cloud` (0 clear .. 1 dark); the cumulative register integrates it
at every read from the clock, so a `ManualClock` makes it exact. `PvEndpoint` serves it
over real UDP (127.0.0.x in tests), like `meter.MeterEndpoint` does the smart meter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from kenshin.echonet import edt as e
from kenshin.echonet.classes import PV, Access, GridConnection
from kenshin.echonet.device import LocalNode, LocalObject
from kenshin.echonet.frame import EOJ
from kenshin.echonet.udp import EchonetDeviceEndpoint

from .clock import JST, Clock

PV_EOJ = EOJ(0x02, 0x79, 0x01)
SIM_MANUFACTURER = 0xFFFFFE  # not a registered maker


@dataclass
class PvConfig:
    peak_w: float = 4000.0
    sunrise_h: float = 6.0
    sunset_h: float = 18.0
    cloud: float = 0.0
    initial_wh: float = 1_234_000.0  # 1,234 kWh generated before the simulation


class SimulatedPv:
    """The inverter's registers and the ECHONET Lite node that serves them."""

    def __init__(self, clock: Clock, config: PvConfig | None = None):
        self.clock = clock
        self.config = config or PvConfig()
        self._wh = self.config.initial_wh
        self._at = clock.now()
        obj = LocalObject(PV_EOJ, PV)
        obj.set_value(0x80, e.OnOff.ON, access=Access.GET_ANNO)
        obj.set_value(0x81, b"\x00", access=Access.GET_SET)
        obj.set_value(0x82, e.StandardVersion("J"))
        obj.set_value(0x88, e.FaultStatus.NO_FAULT)
        obj.set_value(0x8A, SIM_MANUFACTURER)
        obj.set_value(0xD0, GridConnection.REVERSE_FLOW_ACCEPTED)
        codecs = PV.properties
        obj.bind(0xE0, get=lambda: codecs[0xE0].codec.encode(self.generation_w()))
        obj.bind(0xE1, get=lambda: codecs[0xE1].codec.encode(self.cumulative_wh_milli()))
        self.object = obj
        self.node = LocalNode([obj], manufacturer_code=SIM_MANUFACTURER)

    def power_at(self, moment: datetime) -> float:
        local = moment.astimezone(JST)
        hour = local.hour + local.minute / 60 + local.second / 3600
        cfg = self.config
        if not cfg.sunrise_h < hour < cfg.sunset_h:
            return 0.0
        phase = (hour - cfg.sunrise_h) / (cfg.sunset_h - cfg.sunrise_h)
        return cfg.peak_w * math.sin(math.pi * phase) * (1 - min(max(cfg.cloud, 0.0), 1.0))

    def _advance(self) -> datetime:
        """Integrate generation up to now (trapezoids of at most a minute)."""
        now = self.clock.now()
        while self._at < now:
            step = min((now - self._at).total_seconds(), 60.0)
            later = self._at + (now - self._at) * (step / (now - self._at).total_seconds())
            self._wh += (self.power_at(self._at) + self.power_at(later)) / 2 * step / 3600
            self._at = later
        return now

    def generation_w(self) -> int:
        return round(self.power_at(self._advance()))

    def cumulative_wh_milli(self) -> int:
        """EPC 0xE1's unit is 0.001 kWh, that is 1 Wh."""
        self._advance()
        return int(self._wh) % 1_000_000_000


class PvEndpoint(EchonetDeviceEndpoint):
    """The simulated inverter answering on UDP."""

    def __init__(self, pv: SimulatedPv, **kwargs):
        super().__init__(pv.node, **kwargs)
        self.pv = pv
