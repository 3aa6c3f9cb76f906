"""One smart-meter session, whatever the link: typed reads in the field's own units.

The gateway uses only this API. A `MeterLink` carries ECHONET Lite requests to one meter
(over UDP here; over a Wi-SUN dongle in `kenshin.wisun`), and `SmartMeterSession` turns
them into values: power in W, currents in dA, energy as exact integer mWh with the
meter's coefficient, unit and digits applied, fixed-time and history values stamped with
the meter's own JST clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from kenshin.echonet import edt as e
from kenshin.echonet.classes import encode_property
from kenshin.echonet.errors import EchonetDecodeError
from kenshin.echonet.frame import ESV, SMART_METER, Property
from kenshin.echonet.smart_meter import EnergyScale
from kenshin.echonet.udp import EchonetClient, EchonetTimeout, Response
from kenshin.jst import SLOT


class MeterError(Exception):
    """Base of the meter session's errors."""


class MeterTimeout(MeterError, TimeoutError):
    """The meter did not answer (the message names node and EPCs)."""


class PropertyUnavailable(MeterError):
    """The meter refused or garbled a property it was asked for."""

    def __init__(self, epc: int, why: str = "refused by the meter"):
        self.epc = epc
        super().__init__(f"EPC 0x{epc:02X} {why}")


class MeterLink(Protocol):
    """Carries one ECHONET Lite request to the meter and returns its matched answer."""

    description: str

    async def request(
        self, esv: ESV, props: list[Property], props_get: list[Property] | None = None
    ) -> Response: ...


class UdpMeterLink:
    """A meter reached over ECHONET Lite/UDP (an Ethernet bridge or the simulator)."""

    def __init__(self, client: EchonetClient, host: str, port: int | None = None):
        self.client, self.host, self.port = client, host, port
        self.description = f"udp://{host}:{port or client.remote_port}"

    async def request(
        self, esv: ESV, props: list[Property], props_get: list[Property] | None = None
    ) -> Response:
        return await self.client.request(
            self.host, SMART_METER, esv, props, props_get or (), port=self.port
        )


@dataclass(frozen=True, slots=True)
class Energy:
    """A register value: the raw count and what it means, exactly."""

    raw: int
    milliwatt_hours: int

    @property
    def wh(self) -> float:
        return self.milliwatt_hours / 1000

    @property
    def wh_exact(self) -> int | Decimal:
        """Wh without floating point: an int when whole, else a Decimal (0.1 Wh steps)."""
        whole, rest = divmod(self.milliwatt_hours, 1000)
        return whole if rest == 0 else Decimal(self.milliwatt_hours) / 1000


@dataclass(frozen=True, slots=True)
class FixedTimeReading:
    """EA/EB: the registers at the latest half hour by the meter's clock."""

    at: datetime
    normal: Energy | None
    reverse: Energy | None


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    at: datetime  # JST, the meter's clock
    normal: Energy | None
    reverse: Energy | None


@dataclass(frozen=True)
class MeterFacts:
    """What a controller learns at connect, in the AIF start-up order."""

    release: str | None
    manufacturer_code: int | None
    serial: str | None
    scale: EnergyScale
    get_map: frozenset[int]
    set_map: frozenset[int]
    announce_map: frozenset[int]

    @property
    def measures_reverse(self) -> bool:
        return 0xEB in self.get_map or 0xE3 in self.get_map


class SmartMeterSession:
    """Typed reads of one low-voltage smart meter. Call `connect()` first."""

    def __init__(self, link: MeterLink):
        self.link = link
        self.facts: MeterFacts | None = None
        # History reads are Set-then-Get dialogues: never interleave two of them.
        self._selector_lock = asyncio.Lock()

    # -- plumbing --------------------------------------------------------------------------

    async def _request(
        self, esv: ESV, props: list[Property], props_get: list[Property] | None = None
    ) -> Response:
        try:
            return await self.link.request(esv, props, props_get)
        except EchonetTimeout as err:
            raise MeterTimeout(str(err)) from err

    async def get_values(self, epcs: Iterable[int], *, required: bool = True) -> dict[int, Any]:
        """Get several EPCs. Whatever a multi-EPC answer lacks (refused in an SNA, left out
        of a Get_Res, or given with PDC 0) is asked again one at a time, since some meters
        take only one EPC per Get or answer only some (docs/protocol.md §4); only a property
        refused alone counts as refused. Missing ones raise if `required`."""
        epcs = list(dict.fromkeys(epcs))
        answer = await self._request(ESV.GET, [Property(epc) for epc in epcs])
        values = {epc: v for epc, v in answer.values.items() if epc in epcs}
        if len(epcs) > 1:
            for epc in [epc for epc in epcs if epc not in values]:
                single = await self._request(ESV.GET, [Property(epc)])
                if epc in single.values:
                    values[epc] = single.values[epc]
        for epc in epcs:
            if isinstance(values.get(epc), EchonetDecodeError):
                if required:
                    raise PropertyUnavailable(epc, f"malformed: {values[epc]}")
                del values[epc]
            elif epc not in values and required:
                raise PropertyUnavailable(epc)
        return values

    async def read_property(self, epc: int) -> Any:
        return (await self.get_values([epc]))[epc]

    async def _set(self, values: Mapping[int, Any]) -> None:
        props = [Property(epc, encode_property(0x0288, epc, v)) for epc, v in values.items()]
        answer = await self._request(ESV.SETC, props)
        if answer.refused:
            raise PropertyUnavailable(min(answer.refused), "setting refused by the meter")

    # -- start-up --------------------------------------------------------------------------

    async def connect(self) -> MeterFacts:
        """Learn version, property maps, serial, coefficient, digits and unit, in the order
        the AIF specification gives."""
        release = await self.get_values([0x82], required=False)
        maps = await self.get_values([0x9D, 0x9E, 0x9F], required=False)
        get_map = maps.get(0x9F, frozenset())
        ident = await self.get_values([0x8A, 0x8D], required=False)
        scale_values = await self.get_values(
            [epc for epc in (0xD3, 0xD7, 0xE1) if not get_map or epc in get_map or epc == 0xE1],
            required=False,
        )
        if 0xE1 not in scale_values or 0xD7 not in scale_values:
            raise PropertyUnavailable(
                0xE1 if 0xE1 not in scale_values else 0xD7,
                "is needed to read energy and was not given",
            )
        scale = EnergyScale(
            coefficient=scale_values.get(0xD3) or 1,  # D3 is optional: 1 when absent
            unit=scale_values[0xE1],
            digits=scale_values[0xD7],
        )
        version = release.get(0x82)
        self.facts = MeterFacts(
            release=version.release if isinstance(version, e.StandardVersion) else None,
            manufacturer_code=ident.get(0x8A),
            serial=ident.get(0x8D),
            scale=scale,
            get_map=get_map,
            set_map=maps.get(0x9E, frozenset()),
            announce_map=maps.get(0x9D, frozenset()),
        )
        return self.facts

    @property
    def scale(self) -> EnergyScale:
        if self.facts is None:
            raise MeterError("call connect() before reading energy")
        return self.facts.scale

    def energy(self, raw: int | None) -> Energy | None:
        return None if raw is None else Energy(raw, self.scale.to_milliwatt_hours(raw))

    # -- typed reads -----------------------------------------------------------------------

    async def instant_power_w(self) -> int | None:
        """Signed W (negative: reverse flow); None when the meter has no value."""
        return await self.read_property(0xE7)

    async def currents(self) -> e.Currents:
        return await self.read_property(0xE8)

    async def instant(self) -> tuple[int | None, e.Currents]:
        """Power and currents in one request (split by the meter if it must)."""
        values = await self.get_values([0xE7, 0xE8])
        return values[0xE7], values[0xE8]

    async def cumulative_energy(self) -> tuple[Energy | None, Energy | None]:
        epcs = [0xE0, 0xE3] if self.facts and self.facts.measures_reverse else [0xE0]
        values = await self.get_values(epcs)
        return self.energy(values[0xE0]), self.energy(values.get(0xE3))

    async def fixed_time_energy(self) -> FixedTimeReading:
        reverse = self.facts is not None and 0xEB in self.facts.get_map
        values = await self.get_values([0xEA, 0xEB] if reverse else [0xEA])
        normal: e.FixedTimeEnergy = values[0xEA]
        rev: e.FixedTimeEnergy | None = values.get(0xEB)
        return FixedTimeReading(
            normal.at, self.energy(normal.raw), self.energy(rev.raw) if rev else None
        )

    async def history1(self, day: int, *, reverse: bool = False) -> list[HistoryPoint]:
        """The 48 half-hour register values of the day `day` days ago (E5 then E2/E4)."""
        epc = 0xE4 if reverse else 0xE2
        async with self._selector_lock:
            await self._set({0xE5: day})
            history: e.History1 = await self.read_property(epc)
        if history.day != day:
            raise PropertyUnavailable(epc, f"answered day {history.day}, not {day}")
        start = await self._day_start(day)
        points = []
        for i, raw in enumerate(history.raw):
            energy = self.energy(raw)
            points.append(
                HistoryPoint(
                    start + i * SLOT, None if reverse else energy, energy if reverse else None
                )
            )
        return points

    async def _day_start(self, day: int) -> datetime:
        """Midnight JST of the selected day, by the meter's own clock (its EA timestamp)."""
        latest: e.FixedTimeEnergy = await self.read_property(0xEA)
        midnight = latest.at.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=day)

    async def history2(self, newest: datetime, count: int) -> list[HistoryPoint]:
        """Up to 12 (normal, reverse) half-hour pairs going back from `newest` (ED then EC)."""
        return await self._history_pairs(0xED, 0xEC, newest, count)

    async def history3(self, newest: datetime, count: int) -> list[HistoryPoint]:
        """Up to 10 (normal, reverse) one-minute pairs going back from `newest` (EF then EE)."""
        return await self._history_pairs(0xEF, 0xEE, newest, count)

    async def _history_pairs(
        self, selector: int, epc: int, newest: datetime, count: int
    ) -> list[HistoryPoint]:
        async with self._selector_lock:
            await self._set({selector: e.HistoryTime(newest, count)})
            history: e.History2 = await self.read_property(epc)
        return [
            HistoryPoint(at, self.energy(n), self.energy(r))
            for at, (n, r) in zip(history.times(), history.pairs, strict=True)
        ]

    async def one_minute_energy(self) -> HistoryPoint:
        value: e.OneMinuteEnergy = await self.read_property(0xD0)
        return HistoryPoint(value.at, self.energy(value.normal_raw), self.energy(value.reverse_raw))


__all__ = [
    "Energy",
    "FixedTimeReading",
    "HistoryPoint",
    "MeterError",
    "MeterFacts",
    "MeterLink",
    "MeterTimeout",
    "PropertyUnavailable",
    "SmartMeterSession",
    "UdpMeterLink",
]
