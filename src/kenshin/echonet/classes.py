"""Object classes described by data: a registry of class code -> property specs.

Adding a class is adding a `ClassSpec` here (or calling `register_class`); the codec, the
device role and the client all read these tables, so no new code path is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Flag, IntEnum
from typing import Any

from . import edt as e
from .errors import EchonetDecodeError


class Access(Flag):
    """What a controller may do with a property (Appendix: Get, Set, announced on change)."""

    GET = 1
    SET = 2
    ANNO = 4
    GET_SET = GET | SET
    GET_ANNO = GET | ANNO
    ALL = GET | SET | ANNO


@dataclass(frozen=True, slots=True)
class PropertySpec:
    epc: int
    name: str  # snake_case, in the field's words
    codec: e.Codec
    access: Access = Access.GET
    mandatory: bool = False
    unit: str = ""  # shown beside the value by the CLI
    description: str = ""


@dataclass(frozen=True)
class ClassSpec:
    class_code: int  # class group << 8 | class
    name: str
    properties: dict[int, PropertySpec] = field(default_factory=dict)

    def spec(self, epc: int) -> PropertySpec | None:
        return self.properties.get(epc)

    def by_name(self, name: str) -> PropertySpec:
        for spec in self.properties.values():
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no property {name!r}")

    @property
    def mandatory(self) -> frozenset[int]:
        return frozenset(p.epc for p in self.properties.values() if p.mandatory)


def _props(*specs: PropertySpec) -> dict[int, PropertySpec]:
    return {s.epc: s for s in specs}


P = PropertySpec
_WH_MAX = 999_999_999  # the Appendix's bound of 4-byte energies and powers (Wh, W)
_WATTS = e.Unsigned(4, maximum=_WH_MAX)
_SIGNED_WATTS = e.Signed(4, minimum=-_WH_MAX, maximum=_WH_MAX)  # + charging, - discharging
G, GS, GA, GSA = Access.GET, Access.GET_SET, Access.GET_ANNO, Access.ALL

# Device object super class: every device object has these (the node profile has its own).
SUPER_CLASS = _props(
    P(0x80, "operation_status", e.Choice(e.OnOff), GSA, True),
    P(0x81, "installation_location", e.Raw(min_size=1, max_size=17), GSA, True),
    P(0x82, "standard_version", e.StandardVersionCodec(), G, True),
    P(0x83, "identification_number", e.Raw(min_size=9, max_size=17), G),
    P(0x84, "instantaneous_power_consumption", e.Unsigned(2, maximum=65533), G, unit="W"),
    P(0x85, "cumulative_energy_consumption", e.Unsigned(4, maximum=_WH_MAX), G, unit="0.001 kWh"),
    P(0x88, "fault_status", e.Choice(e.FaultStatus), GA, True),
    P(0x8A, "manufacturer_code", e.Unsigned(3), G, True),
    P(0x8D, "production_number", e.Ascii(12), G),
    P(0x97, "current_time", e.TimeCodec(), GS),
    P(0x98, "current_date", e.DateCodec(), GS),
    P(0x9D, "announce_property_map", e.PropertyMapCodec(), G, True),
    P(0x9E, "set_property_map", e.PropertyMapCodec(), G, True),
    P(0x9F, "get_property_map", e.PropertyMapCodec(), G, True),
)

NODE_PROFILE = ClassSpec(0x0EF0, "node_profile", _props(
    P(0x80, "operation_status", e.Choice(e.OnOff), GA, True),
    P(0x82, "version_information", e.NodeVersionCodec(), G, True),
    P(0x83, "identification_number", e.Raw(17), G, True),
    P(0x8A, "manufacturer_code", e.Unsigned(3), G, True),
    P(0x9D, "announce_property_map", e.PropertyMapCodec(), G, True),
    P(0x9E, "set_property_map", e.PropertyMapCodec(), G, True),
    P(0x9F, "get_property_map", e.PropertyMapCodec(), G, True),
    P(0xD3, "self_node_instances", e.Unsigned(3), G, True),
    P(0xD4, "self_node_classes", e.Unsigned(2), G, True),
    P(0xD5, "instance_list_notification", e.InstanceListCodec(), Access.ANNO, True),
    P(0xD6, "self_node_instance_list", e.InstanceListCodec(), G, True),
    P(0xD7, "self_node_class_list", e.ClassListCodec(), G, True),
))  # fmt: skip


def _device(class_code: int, name: str, *specs: PropertySpec) -> ClassSpec:
    return ClassSpec(class_code, name, {**SUPER_CLASS, **_props(*specs)})


SMART_METER = _device(
    0x0288, "low_voltage_smart_electric_energy_meter",
    P(0xC0, "broute_identification_number", e.Raw(17), G),
    P(0xD0, "one_minute_cumulative_energy", e.OneMinuteEnergyCodec(), G, unit="count"),
    P(0xD3, "coefficient", e.Unsigned(4, minimum=1, maximum=999_999), G, True),
    P(0xD7, "effective_digits", e.Unsigned(1, minimum=1, maximum=8), G, True, "digits"),
    P(0xE0, "cumulative_energy_normal", e.ENERGY_RAW, G, True, "count"),
    P(0xE1, "energy_unit", e.Choice(e.EnergyUnit), G, True),
    P(0xE2, "history1_normal", e.History1Codec(), G, True, "count"),
    P(0xE3, "cumulative_energy_reverse", e.ENERGY_RAW, G, False, "count"),
    P(0xE4, "history1_reverse", e.History1Codec(), G, False, "count"),
    P(0xE5, "history1_day", e.Unsigned(1, maximum=99), GS, True, "days ago"),
    P(0xE7, "instantaneous_power", e.Signed(4, no_data=(e.NO_DATA_S32,)), G, True, "W"),
    P(0xE8, "instantaneous_currents", e.CurrentsCodec(), G, True, "0.1 A"),
    P(0xEA, "fixed_time_energy_normal", e.FixedTimeEnergyCodec(), GA, True, "count"),
    P(0xEB, "fixed_time_energy_reverse", e.FixedTimeEnergyCodec(), GA, False, "count"),
    P(0xEC, "history2", e.History2Codec(30, 12), G, False, "count"),
    P(0xED, "history2_time", e.HistoryTimeCodec(30, 12), GS),
    P(0xEE, "history3", e.History2Codec(1, 10), G, False, "count"),
    P(0xEF, "history3_time", e.HistoryTimeCodec(1, 10), GS),
)  # fmt: skip


class GridConnection(IntEnum):
    REVERSE_FLOW_ACCEPTED = 0x00
    INDEPENDENT = 0x01
    REVERSE_FLOW_NOT_ACCEPTED = 0x02


PV = _device(
    0x0279, "home_solar_power_generation",
    P(0xA0, "output_power_control_1", e.Unsigned(1, maximum=100), GS, unit="%"),
    P(0xD0, "grid_connection", e.Choice(GridConnection), G),
    P(0xE0, "instantaneous_generation", e.Unsigned(2, maximum=65533), G, True, "W"),
    P(0xE1, "cumulative_generation", e.Unsigned(4, maximum=999_999_999), G, True, "0.001 kWh"),
    P(0xE3, "cumulative_sold", e.Unsigned(4, maximum=999_999_999), G, False, "0.001 kWh"),
)  # fmt: skip


class BatteryMode(IntEnum):
    OTHER = 0x40
    RAPID_CHARGING = 0x41
    CHARGING = 0x42
    DISCHARGING = 0x43
    STANDBY = 0x44
    TEST = 0x45
    AUTOMATIC = 0x46
    RESTART = 0x48
    CAPACITY_RECALCULATION = 0x49


STORAGE_BATTERY = _device(
    0x027D, "storage_battery",
    P(0xA0, "ac_effective_capacity_charging", _WATTS, G, unit="Wh"),
    P(0xA1, "ac_effective_capacity_discharging", _WATTS, G, unit="Wh"),
    P(0xC8, "charging_power_range", e.PowerRangeCodec(), G, unit="W"),
    P(0xC9, "discharging_power_range", e.PowerRangeCodec(), G, unit="W"),
    P(0xCF, "working_operation_status", e.Choice(BatteryMode), GA, True),
    P(0xD0, "rated_energy", _WATTS, G, unit="Wh"),
    P(0xD3, "instantaneous_charge_power", _SIGNED_WATTS, G, False, "W"),
    P(0xDA, "operation_mode", e.Choice(BatteryMode), GSA, True),
    P(0xE2, "remaining_energy", _WATTS, G, True, "Wh"),
    P(0xE4, "remaining_percent", e.Unsigned(1, maximum=100), G, True, "%"),
    P(0xE6, "battery_type", e.Unsigned(1), G, True),
    P(0xEB, "charging_power_setting", _WATTS, GS, unit="W"),
    P(0xEC, "discharging_power_setting", _WATTS, GS, unit="W"),
)  # fmt: skip


class VehicleConnection(IntEnum):
    NOT_CONNECTED = 0x30
    CONNECTED = 0x40
    CHARGEABLE = 0x41
    DISCHARGEABLE = 0x42
    CHARGEABLE_AND_DISCHARGEABLE = 0x43
    NEITHER = 0x44
    UNKNOWN = 0xFF


class EvMode(IntEnum):
    OTHER = 0x40
    CHARGING = 0x42
    DISCHARGING = 0x43
    STANDBY = 0x44
    IDLE = 0x47


EV_CHARGER = _device(
    0x027E, "ev_charger_discharger",
    P(0xC5, "rated_charge_power", _WATTS, G, True, "W"),
    P(0xC7, "vehicle_connection", e.Choice(VehicleConnection), GA, True),
    P(0xC8, "charging_power_range", e.PowerRangeCodec(), G, unit="W"),
    P(0xD3, "instantaneous_charge_power", _SIGNED_WATTS, G, False, "W"),
    P(0xD6, "cumulative_discharge", _WATTS, G, False, "0.001 kWh"),
    P(0xD8, "cumulative_charge", _WATTS, G, False, "0.001 kWh"),
    P(0xDA, "operation_mode", e.Choice(EvMode), GSA, True),
    P(0xE2, "vehicle_remaining_energy", _WATTS, G, unit="Wh"),
    P(0xE4, "vehicle_remaining_percent", e.Unsigned(1, maximum=100), G, unit="%"),
    P(0xEB, "charging_power_setting", _WATTS, GS, unit="W"),
)  # fmt: skip


class AirconMode(IntEnum):
    OTHER = 0x40
    AUTO = 0x41
    COOLING = 0x42
    HEATING = 0x43
    DEHUMIDIFYING = 0x44
    FAN = 0x45


class PowerSaving(IntEnum):
    SAVING = 0x41
    NORMAL = 0x42


_TEMPERATURE_C = e.Signed(1, minimum=-127, maximum=125, no_data=(0x7E,))

AIR_CONDITIONER = _device(
    0x0130, "home_air_conditioner",
    P(0x8F, "power_saving", e.Choice(PowerSaving), GS, True),
    P(0xA0, "air_flow_rate", e.Unsigned(1, minimum=0x31, maximum=0x41), GS, True),
    P(0xB0, "operation_mode", e.Choice(AirconMode), GSA, True),
    P(0xB3, "temperature_setting", e.Unsigned(1, maximum=50, no_data=(0xFD,)), GS, True, "°C"),
    P(0xBB, "room_temperature", _TEMPERATURE_C, G, False, "°C"),
    P(0xBE, "outdoor_temperature", _TEMPERATURE_C, G, False, "°C"),
)  # fmt: skip


class WaterHeating(IntEnum):
    """0xB0 of the electric water heater: heat by its own schedule, heat now, or hold."""

    AUTO = 0x41
    MANUAL_HEATING = 0x42
    MANUAL_STOP = 0x43


class HeatingStatus(IntEnum):
    HEATING = 0x41
    NOT_HEATING = 0x42


class Permission(IntEnum):
    PERMITTED = 0x41
    PROHIBITED = 0x42


WATER_HEATER = _device(
    0x026B, "electric_water_heater",
    P(0xB0, "heating_setting", e.Choice(WaterHeating), GSA, True),
    P(0xB2, "heating_status", e.Choice(HeatingStatus), GA, True),
    P(0xB3, "water_temperature_setting", e.Unsigned(1, maximum=100), GS, unit="°C"),
    P(0xC0, "daytime_reheating", e.Choice(Permission), GS, True),
    P(0xE1, "remaining_hot_water", e.Unsigned(2, maximum=65533), G, unit="L"),
    P(0xE2, "tank_capacity", e.Unsigned(2, maximum=65533), G, unit="L"),
)  # fmt: skip

DISTRIBUTION_BOARD = _device(
    0x0287, "distribution_board_metering",
    P(0xC0, "cumulative_energy_normal", e.ENERGY_RAW, G, True, "count"),
    P(0xC1, "cumulative_energy_reverse", e.ENERGY_RAW, G, False, "count"),
    P(0xC2, "energy_unit", e.Choice(e.EnergyUnit), G, True),
    P(0xC6, "instantaneous_power", e.Signed(4, no_data=(e.NO_DATA_S32,)), G, False, "W"),
    P(0xC7, "instantaneous_currents", e.CurrentsCodec(), G, False, "0.1 A"),
)  # fmt: skip

CONTROLLER = _device(0x05FF, "controller")

_REGISTRY: dict[int, ClassSpec] = {}


def register_class(spec: ClassSpec) -> ClassSpec:
    """Add (or replace) a class description; returns it for convenience."""
    _REGISTRY[spec.class_code] = spec
    return spec


for _spec in (
    NODE_PROFILE,
    SMART_METER,
    PV,
    STORAGE_BATTERY,
    EV_CHARGER,
    AIR_CONDITIONER,
    WATER_HEATER,
    DISTRIBUTION_BOARD,
    CONTROLLER,
):
    register_class(_spec)


def class_spec(class_code: int) -> ClassSpec | None:
    return _REGISTRY.get(class_code)


def all_classes() -> list[ClassSpec]:
    return list(_REGISTRY.values())


def property_spec(class_code: int, epc: int) -> PropertySpec | None:
    """The spec of `epc` in that class; the super class's for unknown device classes."""
    spec = _REGISTRY.get(class_code)
    if spec is not None:
        return spec.properties.get(epc)
    return SUPER_CLASS.get(epc)


def decode_property(class_code: int, epc: int, edt: bytes) -> Any:
    """Typed value of one property, or the bytes themselves where no spec is known.
    Raises `EchonetDecodeError` carrying the EPC for a malformed EDT."""
    cls = _REGISTRY.get(class_code)  # property_spec(), inline: this is the hot path
    spec = SUPER_CLASS.get(epc) if cls is None else cls.properties.get(epc)
    if spec is None:
        return bytes(edt)
    try:
        return spec.codec.decode(edt)
    except EchonetDecodeError as err:
        raise EchonetDecodeError(f"{spec.name}: {err.reason}", offset=err.offset, epc=epc) from None


def encode_property(class_code: int, epc: int, value: Any) -> bytes:
    spec = property_spec(class_code, epc)
    if spec is None:
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        raise KeyError(f"no spec for EPC 0x{epc:02X} of class 0x{class_code:04X}")
    return spec.codec.encode(value)
