"""A gateway's demand-response settings (`values["dr"]`), shared by the gateway, which acts
on them (`kenshin.gateway.dr`), and the server, which refuses what a gateway could not
take before it goes out: the retailer's policy per device class with its comfort limits,
and where the home's devices are found (`lan`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class BatteryPolicy(StrictModel):
    discharge: bool = True
    min_soc_percent: int = Field(20, ge=0, le=100)
    max_discharge_w: int | None = Field(None, gt=0, le=999_999_999)


class EvPolicy(StrictModel):
    pause: bool = True
    max_pause_minutes: int = Field(60, ge=0, le=24 * 60)


class AirconPolicy(StrictModel):
    adjust: bool = True
    max_raise_c: int = Field(2, ge=0, le=10)
    max_cooling_c: int = Field(28, ge=16, le=30)
    max_lower_c: int = Field(2, ge=0, le=10)
    min_heating_c: int = Field(18, ge=16, le=30)
    power_saving: bool = True


class WaterHeaterPolicy(StrictModel):
    hold: bool = True
    max_hold_minutes: int = Field(120, ge=0, le=24 * 60)


class DrPolicy(StrictModel):
    """What the retailer allows on this home's devices (defaults: cautious)."""

    battery: BatteryPolicy = BatteryPolicy()
    ev: EvPolicy = EvPolicy()
    aircon: AirconPolicy = AirconPolicy()
    water_heater: WaterHeaterPolicy = WaterHeaterPolicy()


class DrLan(StrictModel):
    """Where the DR runner looks for devices: `hosts` asked directly (else multicast
    discovery), their ECHONET Lite `port`, the address to `bind`, how long to listen."""

    hosts: list[str] | None = Field(None, min_length=1, max_length=64)
    port: int = Field(3610, gt=0, lt=65_536)
    bind: str = Field("", max_length=64)
    discover_timeout_s: float = Field(2.0, gt=0, le=30)


class DrSettings(DrPolicy):
    """The whole `dr` section: the policy and `lan`."""

    lan: DrLan | None = None
