"""Controllable devices of a simulated home, each an ECHONET Lite node (serve one with
`devices.DeviceEndpoint` on 127.0.0.x), for the gateway's demand response to act on.

Each model is deliberately small, exact on a `ManualClock`, and documented here so that a
test can compute what the meter must count (docs/protocol.md has the EPC facts):

- **Storage battery** (0x027D01). Operation mode 0xDA: charging at the charging power
  setting 0xEB (rapid charging at its maximum), discharging at the discharging power
  setting 0xEC, standby, or automatic (charges in the night window, else stands by).
  Stored energy integrates power; charging stops at full, discharging at `min_percent`.
  0xD3 is signed: + charging, - discharging. No conversion losses.
- **EV charger** (0x027E01). A session: a car connected that still wants `wanted_wh`.
  Mode 0xDA charging draws the charging power setting 0xEB until the car has what it
  wanted; standby (or idle) pauses it. It only charges: discharging is refused.
- **Home air conditioner** (0x013001). Cooling draws
  `fan_w + w_per_c × max(0, outdoor − setpoint)`, heating the same with
  `setpoint − outdoor`, automatic whichever applies, fan only `fan_w`, dehumidifying
  `fan_w + w_per_c`; at most `max_w`, rounded to the watt; power saving (0x8F) runs at
  `saving_percent` of that (floored). Outdoor air is `load.outdoor_temperature_c` at the
  middle of the half hour, so the power changes only at half hours.
- **Electric water heater** (0x026B01). Automatic (0xB0 = 0x41) heats at `heater_w` in
  the night window, and in the afternoon window when daytime reheating (0xC0) is
  permitted, until the tank is full; manual heating (0x42) heats now until full; manual
  stop (0x43) holds all heating, which is what demand response asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from kenshin.echonet import edt as e
from kenshin.echonet.classes import (
    AirconMode,
    BatteryMode,
    EvMode,
    HeatingStatus,
    Permission,
    PowerSaving,
    VehicleConnection,
    WaterHeating,
)
from kenshin.echonet.frame import EOJ

from .clock import JST, Clock
from .devices import WUS_PER_WH, SimulatedDevice, ceil_div, hour_of_day, in_window, next_hour_edge
from .load import outdoor_temperature_c

BATTERY_EOJ = EOJ(0x02, 0x7D, 0x01)
EV_EOJ = EOJ(0x02, 0x7E, 0x01)
AIRCON_EOJ = EOJ(0x01, 0x30, 0x01)
WATER_HEATER_EOJ = EOJ(0x02, 0x6B, 0x01)
US = 1_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _after_us(moment: datetime, us: int) -> datetime:
    return moment + timedelta(microseconds=us)


# -- storage battery -----------------------------------------------------------------------


@dataclass
class BatteryConfig:
    capacity_wh: int = 10_000
    stored_wh: int = 6_000
    max_charge_w: int = 3_000
    max_discharge_w: int = 3_000
    min_percent: int = 10  # the battery's own floor: discharging stops there
    mode: BatteryMode = BatteryMode.STANDBY
    night: tuple[float, float] = (23.0, 7.0)  # automatic mode charges then


_BATTERY_MODES = {BatteryMode.CHARGING, BatteryMode.RAPID_CHARGING, BatteryMode.DISCHARGING,
                  BatteryMode.STANDBY, BatteryMode.AUTOMATIC}  # fmt: skip


class SimulatedBattery(SimulatedDevice):
    def __init__(self, clock: Clock, config: BatteryConfig | None = None, identity: int = 1):
        super().__init__(clock, BATTERY_EOJ, 0x027D_0000 + identity)
        self.config = cfg = config or BatteryConfig()
        self.full_wus = cfg.capacity_wh * WUS_PER_WH
        self.floor_wus = self.full_wus * cfg.min_percent // 100
        self.stored_wus = cfg.stored_wh * WUS_PER_WH
        self.mode = cfg.mode
        self.charge_w, self.discharge_w = cfg.max_charge_w, cfg.max_discharge_w
        obj = self.object
        obj.set_value(0x80, e.OnOff.ON)
        obj.set_value(0xE6, 0x04)  # lithium-ion
        for epc in (0xA0, 0xA1, 0xD0):
            obj.set_value(epc, cfg.capacity_wh)
        obj.set_value(0xC8, e.PowerRange(0, cfg.max_charge_w))
        obj.set_value(0xC9, e.PowerRange(0, cfg.max_discharge_w))
        self.serve(0xDA, lambda: self.mode, self._set_mode, check=_BATTERY_MODES.__contains__)
        self.serve(0xCF, self.working)
        self.serve(0xD3, lambda: self._watts[-1])
        self.serve(0xE2, lambda: self.stored_wus // WUS_PER_WH)
        self.serve(0xE4, self.percent)
        self.serve(0xEB, lambda: self.charge_w, self._set_charge,
                   check=lambda w: 0 < w <= cfg.max_charge_w)  # fmt: skip
        self.serve(0xEC, lambda: self.discharge_w, self._set_discharge,
                   check=lambda w: 0 < w <= cfg.max_discharge_w)  # fmt: skip
        self._serve_node()

    def _set_mode(self, mode: BatteryMode) -> None:
        self.mode = mode

    def _set_charge(self, watts: int) -> None:
        self.charge_w = watts

    def _set_discharge(self, watts: int) -> None:
        self.discharge_w = watts

    def percent(self) -> int:
        return self.stored_wus * 100 // self.full_wus

    def working(self) -> BatteryMode:
        """0xCF: what it is doing now (automatic resolves to charging or standby)."""
        watts = self._watts[-1]
        if watts > 0:
            return BatteryMode.CHARGING
        return BatteryMode.DISCHARGING if watts < 0 else BatteryMode.STANDBY

    def _power(self) -> int:
        mode = self.mode
        if mode == BatteryMode.AUTOMATIC:
            night = in_window(hour_of_day(self.at), self.config.night)
            mode = BatteryMode.CHARGING if night else BatteryMode.STANDBY
        if mode == BatteryMode.RAPID_CHARGING and self.stored_wus < self.full_wus:
            return self.config.max_charge_w
        if mode == BatteryMode.CHARGING and self.stored_wus < self.full_wus:
            return self.charge_w
        if mode == BatteryMode.DISCHARGING and self.stored_wus > self.floor_wus:
            return -self.discharge_w
        return 0

    def _next_change(self) -> datetime | None:
        watts, edges = self._watts[-1], []
        if watts > 0:
            edges.append(_after_us(self.at, ceil_div(self.full_wus - self.stored_wus, watts)))
        elif watts < 0:
            edges.append(_after_us(self.at, ceil_div(self.stored_wus - self.floor_wus, -watts)))
        if self.mode == BatteryMode.AUTOMATIC:
            edges.append(next_hour_edge(self.at, self.config.night))
        return min(edges, default=None)

    def _integrate(self, us: int, watts: int) -> None:
        stored = self.stored_wus + watts * us
        if watts > 0:
            stored = min(stored, self.full_wus)
        elif watts < 0:
            stored = max(stored, self.floor_wus)
        self.stored_wus = stored


# -- EV charger ------------------------------------------------------------------------------


@dataclass
class EvConfig:
    rated_w: int = 3_000
    min_w: int = 1_400
    vehicle_capacity_wh: int = 40_000
    vehicle_wh: int = 20_000
    wanted_wh: int = 10_000  # what the connected car still wants this session
    connected: bool = True
    mode: EvMode = EvMode.CHARGING


class SimulatedEvCharger(SimulatedDevice):
    def __init__(self, clock: Clock, config: EvConfig | None = None, identity: int = 1):
        super().__init__(clock, EV_EOJ, 0x027E_0000 + identity)
        self.config = cfg = config or EvConfig()
        self.vehicle_wus = cfg.vehicle_wh * WUS_PER_WH
        self.wanted_wus = cfg.wanted_wh * WUS_PER_WH
        self.mode = cfg.mode
        self.charge_w = cfg.rated_w
        obj = self.object
        obj.set_value(0x80, e.OnOff.ON)
        obj.set_value(0xC5, cfg.rated_w)
        obj.set_value(0xC8, e.PowerRange(cfg.min_w, cfg.rated_w))
        self.serve(0xC7, self.connection)
        self.serve(0xD3, lambda: self._watts[-1])
        self.serve(0xDA, lambda: self.mode, self._set_mode,
                   check={EvMode.CHARGING, EvMode.STANDBY, EvMode.IDLE}.__contains__)  # fmt: skip
        self.serve(0xE2, lambda: self.vehicle_wus // WUS_PER_WH)
        self.serve(0xE4, lambda: self.vehicle_wus * 100 // (cfg.vehicle_capacity_wh * WUS_PER_WH))
        self.serve(0xEB, lambda: self.charge_w, self._set_charge,
                   check=lambda w: cfg.min_w <= w <= cfg.rated_w)  # fmt: skip
        self._serve_node()

    def _set_mode(self, mode: EvMode) -> None:
        self.mode = mode

    def _set_charge(self, watts: int) -> None:
        self.charge_w = watts

    def connection(self) -> VehicleConnection:
        if not self.config.connected:
            return VehicleConnection.NOT_CONNECTED
        return VehicleConnection.CHARGEABLE if self.wanted_wus else VehicleConnection.NEITHER

    def _power(self) -> int:
        charging = self.mode == EvMode.CHARGING and self.config.connected
        return self.charge_w if charging and self.wanted_wus > 0 else 0

    def _next_change(self) -> datetime | None:
        watts = self._watts[-1]
        return _after_us(self.at, ceil_div(self.wanted_wus, watts)) if watts > 0 else None

    def _integrate(self, us: int, watts: int) -> None:
        self.wanted_wus = max(0, self.wanted_wus - watts * us)
        self.vehicle_wus += watts * us


# -- home air conditioner ----------------------------------------------------------------


def half_hour_outdoor_c(moment: datetime) -> float:
    """The outdoor air the load model uses, at the middle of `moment`'s JST half hour."""
    local = moment.astimezone(JST)
    middle = local.hour + (30 if local.minute >= 30 else 0) / 60 + 0.25
    day = local.date().toordinal() - _EPOCH_ORDINAL
    return outdoor_temperature_c(day, local.timetuple().tm_yday, middle)


@dataclass
class AirconConfig:
    on: bool = True
    mode: AirconMode = AirconMode.COOLING
    setpoint_c: int = 26
    fan_w: int = 40
    w_per_c: int = 150
    max_w: int = 2_000
    saving_percent: int = 80
    outdoor_c: Callable[[datetime], float] = half_hour_outdoor_c  # constant per half hour


class SimulatedAircon(SimulatedDevice):
    def __init__(self, clock: Clock, config: AirconConfig | None = None, identity: int = 1):
        super().__init__(clock, AIRCON_EOJ, 0x0130_0000 + identity)
        self.config = cfg = config or AirconConfig()
        self.on, self.mode, self.setpoint = cfg.on, cfg.mode, cfg.setpoint_c
        self.saving = PowerSaving.NORMAL
        self.object.set_value(0xA0, 0x41)  # air flow: automatic
        self.serve(0x80, lambda: e.OnOff.ON if self.on else e.OnOff.OFF, self._set_on)
        self.serve(0x8F, lambda: self.saving, self._set_saving)
        self.serve(0xB0, lambda: self.mode, self._set_mode)
        self.serve(
            0xB3,
            lambda: self.setpoint,
            self._set_setpoint,
            check=lambda c: c is not None and 16 <= c <= 30,
        )
        self.serve(0xBB, lambda: self.setpoint if self.on else round(cfg.outdoor_c(self.at)))
        self.serve(0xBE, lambda: round(cfg.outdoor_c(self.at)))
        self.serve(0x84, lambda: self._watts[-1])
        self._serve_node()

    def _set_on(self, value: e.OnOff) -> None:
        self.on = value == e.OnOff.ON

    def _set_saving(self, value: PowerSaving) -> None:
        self.saving = value

    def _set_mode(self, value: AirconMode) -> None:
        self.mode = value

    def _set_setpoint(self, value: int) -> None:
        self.setpoint = value

    def model_w(self, outdoor_c: float, setpoint: int, mode: AirconMode, saving: bool) -> int:
        """The model above, for a test to compute what the meter must see."""
        cfg = self.config
        gap = {
            AirconMode.COOLING: outdoor_c - setpoint,
            AirconMode.HEATING: setpoint - outdoor_c,
            AirconMode.AUTO: abs(outdoor_c - setpoint),
            AirconMode.DEHUMIDIFYING: 1.0,
        }.get(mode, 0.0)
        watts = min(cfg.max_w, round(cfg.fan_w + cfg.w_per_c * max(0.0, gap)))
        return watts * cfg.saving_percent // 100 if saving else watts

    def _power(self) -> int:
        if not self.on:
            return 0
        saving = self.saving == PowerSaving.SAVING
        return self.model_w(self.config.outdoor_c(self.at), self.setpoint, self.mode, saving)

    def _next_change(self) -> datetime | None:
        return next_hour_edge(self.at, tuple(h / 2 for h in range(48))) if self.on else None


# -- electric water heater ----------------------------------------------------------------


@dataclass
class WaterHeaterConfig:
    heater_w: int = 1_500
    tank_l: int = 370
    full_wh: int = 12_000  # the heat a full tank holds above the cold water
    stored_wh: int = 6_000
    night: tuple[float, float] = (23.0, 7.0)
    afternoon: tuple[float, float] = (13.0, 16.0)
    setting: WaterHeating = WaterHeating.AUTO
    daytime: Permission = Permission.PERMITTED


class SimulatedWaterHeater(SimulatedDevice):
    def __init__(self, clock: Clock, config: WaterHeaterConfig | None = None, identity: int = 1):
        super().__init__(clock, WATER_HEATER_EOJ, 0x026B_0000 + identity)
        self.config = cfg = config or WaterHeaterConfig()
        self.full_wus = cfg.full_wh * WUS_PER_WH
        self.stored_wus = cfg.stored_wh * WUS_PER_WH
        self.setting, self.daytime = cfg.setting, cfg.daytime
        obj = self.object
        obj.set_value(0x80, e.OnOff.ON)
        obj.set_value(0xB3, 65)
        obj.set_value(0xE2, cfg.tank_l)
        self.serve(0xB0, lambda: self.setting, self._set_setting)
        self.serve(0xB2, self.status)
        self.serve(0xC0, lambda: self.daytime, self._set_daytime)
        self.serve(0xE1, lambda: cfg.tank_l * self.stored_wus // self.full_wus)
        self.serve(0x84, lambda: self._watts[-1])
        self._serve_node()

    def _set_setting(self, value: WaterHeating) -> None:
        self.setting = value

    def _set_daytime(self, value: Permission) -> None:
        self.daytime = value

    def status(self) -> HeatingStatus:
        return HeatingStatus.HEATING if self._watts[-1] > 0 else HeatingStatus.NOT_HEATING

    def _windows(self) -> list[tuple[float, float]]:
        windows = [self.config.night]
        if self.daytime == Permission.PERMITTED:
            windows.append(self.config.afternoon)
        return windows

    def _power(self) -> int:
        if self.setting == WaterHeating.MANUAL_STOP or self.stored_wus >= self.full_wus:
            return 0
        hour = hour_of_day(self.at)
        scheduled = any(in_window(hour, w) for w in self._windows())
        heating = self.setting == WaterHeating.MANUAL_HEATING or scheduled
        return self.config.heater_w if heating else 0

    def _next_change(self) -> datetime | None:
        watts, edges = self._watts[-1], []
        if watts > 0:
            edges.append(_after_us(self.at, ceil_div(self.full_wus - self.stored_wus, watts)))
        if self.setting == WaterHeating.AUTO:
            edges.append(next_hour_edge(self.at, tuple(h for w in self._windows() for h in w)))
        return min(edges, default=None)

    def _integrate(self, us: int, watts: int) -> None:
        self.stored_wus = min(self.full_wus, self.stored_wus + watts * us)
