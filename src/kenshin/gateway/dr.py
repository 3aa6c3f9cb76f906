"""Demand response in the home, sans-I/O: the retailer's policy, an action, and the plan of
ECHONET Lite Sets that answers it (the I/O is `dr_actor.py`).

- **Policy** (`DrPolicy`, pydantic, strict: the server will send it in the gateway's
  settings): per class what may be done and the comfort limits. A battery may discharge
  down to `min_soc_percent`; an EV charge may be paused `max_pause_minutes`; an air
  conditioner's setpoint may rise `max_raise_c` in cooling and never above `max_cooling_c`
  (fall `max_lower_c`, never below `min_heating_c`, in heating), and power saving may be
  turned on; a water heater may be held (0xB0 = manual stop) `max_hold_minutes`.
- **Action** (`DrAction`): a window and either `reduce_w` (take devices until their
  estimated reduction reaches it) or a `shed` level (1: battery and water heater, which
  nobody feels; 2: and the EV; 3: and the air conditioner).
- **Plan** (`plan`): from what each device reported (`Reading`), the `Change`s to make,
  each with the value to restore and when (the window's end, or sooner where the policy
  bounds the duration). Devices are taken in the order of the shed levels; what was not
  taken says why (`Plan.skipped`). Estimates only rank and count: the report gives the
  power each device really read before and after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, Field, ValidationError, model_validator

from kenshin.echonet.classes import (
    AirconMode,
    BatteryMode,
    EvMode,
    PowerSaving,
    WaterHeating,
)
from kenshin.echonet.edt import OnOff, PowerRange
from kenshin.echonet.frame import EOJ
from kenshin.wire.dr_settings import (  # shared with the server, which checks the settings
    AirconPolicy,
    BatteryPolicy,
    DrPolicy,
    EvPolicy,
    StrictModel,
    WaterHeaterPolicy,
)

BATTERY, EV, AIRCON, WATER_HEATER = 0x027D, 0x027E, 0x0130, 0x026B
# What is read of each class before planning, and which EPC tells its power (W, + drawn).
READ_EPCS = {
    BATTERY: (0xDA, 0xD3, 0xE2, 0xE4, 0xEC, 0xC9),
    EV: (0xDA, 0xD3),
    AIRCON: (0x80, 0xB0, 0xB3, 0x8F, 0x84),
    WATER_HEATER: (0xB0, 0xB2, 0x84),
}
POWER_EPC = {BATTERY: 0xD3, EV: 0xD3, AIRCON: 0x84, WATER_HEATER: 0x84}
SHED_ORDER = (BATTERY, WATER_HEATER, EV, AIRCON)  # least felt first
SHED_CLASSES = {1: 2, 2: 3, 3: 4}  # level -> how many of SHED_ORDER


class DrAction(StrictModel):
    start: AwareDatetime
    end: AwareDatetime
    reduce_w: int | None = Field(None, gt=0, le=1_000_000)
    shed: int | None = Field(None, ge=1, le=3)

    @model_validator(mode="after")
    def _one_target(self) -> DrAction:
        if (self.reduce_w is None) == (self.shed is None):
            raise ValueError("give either reduce_w or shed")
        if not timedelta(0) < self.end - self.start <= timedelta(hours=24):
            raise ValueError("the window must end after it starts, within 24 hours")
        return self


class PolicyError(ValueError):
    """A policy or action that does not validate; `problems` is [(where, why)]."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{where}: {why}" for where, why in problems))


def _parse(model: type[StrictModel], data: Mapping[str, Any] | str | bytes) -> Any:
    try:
        if isinstance(data, str | bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as err:
        problems = [(".".join(map(str, e["loc"])) or "(top)", e["msg"]) for e in err.errors()]
        raise PolicyError(problems) from None


def parse_policy(data: Mapping[str, Any] | str | bytes) -> DrPolicy:
    return _parse(DrPolicy, data)


def parse_action(data: Mapping[str, Any] | str | bytes) -> DrAction:
    return _parse(DrAction, data)


@dataclass(frozen=True)
class Device:
    host: str
    port: int
    eoj: EOJ

    @property
    def class_code(self) -> int:
        return self.eoj.class_code


@dataclass(frozen=True)
class Reading:
    device: Device
    values: Mapping[int, Any]

    @property
    def power_w(self) -> int | None:
        value = self.values.get(POWER_EPC[self.device.class_code])
        return value if isinstance(value, int) else None


@dataclass(frozen=True)
class Change:
    device: Device
    epc: int
    value: Any
    restore: Any
    restore_at: datetime


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    estimate_w: dict[Device, int] = field(default_factory=dict)
    skipped: dict[Device, str] = field(default_factory=dict)

    def restores(self) -> list[tuple[datetime, list[Change]]]:
        """Changes to undo, grouped by when, each group in the reverse order of making."""
        moments = sorted({c.restore_at for c in self.changes})
        return [(m, [c for c in reversed(self.changes) if c.restore_at == m]) for m in moments]


def _until(base: datetime, end: datetime, minutes: float) -> datetime:
    return min(end, base + timedelta(minutes=minutes))


def _battery(r: Reading, p: BatteryPolicy, base: datetime, end: datetime):
    v = r.values
    mode, soc, stored = v.get(0xDA), v.get(0xE4), v.get(0xE2)
    if not p.discharge:
        return "the policy does not let it discharge"
    if not isinstance(soc, int) or not isinstance(stored, int) or soc <= p.min_soc_percent:
        return f"charge {soc} % is not above the policy's {p.min_soc_percent} %"
    limit = v[0xC9].maximum if isinstance(v.get(0xC9), PowerRange) else v.get(0xEC)
    limits = [w for w in (limit, p.max_discharge_w) if isinstance(w, int) and w > 0]
    if not limits or not isinstance(mode, BatteryMode):
        return "it tells neither its discharging power nor its mode"
    watts = min(limits)
    # energy above the policy's floor, from the Wh and % the battery reports
    spare_wh = stored - stored * p.min_soc_percent / soc
    until = _until(base, end, spare_wh / watts * 60)
    changes = []
    if isinstance(v.get(0xEC), int) and v[0xEC] != watts:  # the power first, then the mode
        changes.append((0xEC, watts, v[0xEC], until))
    changes.append((0xDA, BatteryMode.DISCHARGING, mode, until))
    return changes, max(r.power_w or 0, 0) + watts


def _ev(r: Reading, p: EvPolicy, base: datetime, end: datetime):
    if not p.pause or not p.max_pause_minutes:
        return "the policy does not let it pause"
    if r.values.get(0xDA) != EvMode.CHARGING or not (r.power_w or 0) > 0:
        return "not charging"
    until = _until(base, end, p.max_pause_minutes)
    return [(0xDA, EvMode.STANDBY, EvMode.CHARGING, until)], r.power_w


def _aircon(r: Reading, p: AirconPolicy, base: datetime, end: datetime):
    v = r.values
    if not p.adjust or v.get(0x80) != OnOff.ON:
        return "off, or the policy does not let it be adjusted"
    setpoint, mode, changes = v.get(0xB3), v.get(0xB0), []
    # Never the other way: a setpoint already past the limit is left where it is.
    if isinstance(setpoint, int) and mode == AirconMode.COOLING:
        wanted = max(setpoint, min(setpoint + p.max_raise_c, p.max_cooling_c))
    elif isinstance(setpoint, int) and mode == AirconMode.HEATING:
        wanted = min(setpoint, max(setpoint - p.max_lower_c, p.min_heating_c))
    else:
        wanted = setpoint
    if wanted != setpoint:
        changes.append((0xB3, wanted, setpoint, end))
    if p.power_saving and v.get(0x8F) == PowerSaving.NORMAL:
        changes.append((0x8F, PowerSaving.SAVING, PowerSaving.NORMAL, end))
    if not changes:
        return "already at the policy's comfort limit"
    # A guess for ranking only: a tenth of its power a degree, a fifth for power saving.
    share = abs((wanted or 0) - (setpoint or 0)) * 0.1 + 0.2 * (len(changes) > 1)
    return changes, round((r.power_w or 0) * share)


def _water_heater(r: Reading, p: WaterHeaterPolicy, base: datetime, end: datetime):
    setting = r.values.get(0xB0)
    if not p.hold or not p.max_hold_minutes:
        return "the policy does not let it be held"
    if setting == WaterHeating.MANUAL_STOP:
        return "already held"
    until = _until(base, end, p.max_hold_minutes)
    return [(0xB0, WaterHeating.MANUAL_STOP, setting, until)], r.power_w or 0


_PLANNERS = {BATTERY: _battery, EV: _ev, AIRCON: _aircon, WATER_HEATER: _water_heater}


def _policy_of(policy: DrPolicy, class_code: int) -> Any:
    return {BATTERY: policy.battery, EV: policy.ev, AIRCON: policy.aircon,
            WATER_HEATER: policy.water_heater}[class_code]  # fmt: skip


def usable_classes(action: DrAction, policy: DrPolicy) -> tuple[int, ...]:
    """The classes the action's level and the policy let a plan touch at all, least felt
    first (whether a device is then set depends on its state at the start)."""
    allowed = SHED_ORDER[: SHED_CLASSES[action.shed]] if action.shed else SHED_ORDER
    enabled = {
        BATTERY: policy.battery.discharge,
        EV: policy.ev.pause and policy.ev.max_pause_minutes > 0,
        AIRCON: policy.aircon.adjust,
        WATER_HEATER: policy.water_heater.hold and policy.water_heater.max_hold_minutes > 0,
    }
    return tuple(c for c in allowed if enabled[c])


def plan(action: DrAction, readings: list[Reading], policy: DrPolicy, now: datetime) -> Plan:
    """The Sets answering `action`, from the readings taken at `now` (at or after start)."""
    result = Plan()
    base = max(now, action.start)
    ranked = sorted(
        (r for r in readings if r.device.class_code in _PLANNERS),
        key=lambda r: (SHED_ORDER.index(r.device.class_code), r.device.host, r.device.eoj),
    )
    allowed = SHED_ORDER[: SHED_CLASSES[action.shed]] if action.shed else SHED_ORDER
    total = 0
    for reading in ranked:
        device = reading.device
        if device.class_code not in allowed:
            result.skipped[device] = f"not in shed level {action.shed}"
            continue
        if action.reduce_w is not None and total >= action.reduce_w:
            result.skipped[device] = "the target is reached without it"
            continue
        planner = _PLANNERS[device.class_code]
        outcome = planner(reading, _policy_of(policy, device.class_code), base, action.end)
        if isinstance(outcome, str):
            result.skipped[device] = outcome
            continue
        changes, estimate = outcome
        result.changes.extend(Change(device, *c) for c in changes)
        result.estimate_w[device] = estimate
        total += estimate
    return result


@dataclass(frozen=True)
class SetResult:
    """One Set as it went: what was asked, whether the device took it, what it then read."""

    device: Device
    epc: int
    asked: Any
    accepted: bool
    read_back: Any
    at: datetime
    restore: bool = False

    @property
    def confirmed(self) -> bool:
        return self.accepted and self.read_back == self.asked


@dataclass
class DeviceReport:
    device: Device
    sets: list[SetResult] = field(default_factory=list)
    power_before_w: int | None = None
    power_after_w: int | None = None
    power_restored_w: int | None = None


@dataclass
class DrReport:
    action: DrAction
    devices: dict[Device, DeviceReport] = field(default_factory=dict)
    skipped: dict[Device, str] = field(default_factory=dict)

    def for_device(self, device: Device) -> DeviceReport:
        return self.devices.setdefault(device, DeviceReport(device))
