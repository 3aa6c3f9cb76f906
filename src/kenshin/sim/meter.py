"""A simulated low-voltage smart electric energy meter (0x028801) that behaves like one.

The physics lives in `load` (what the house draws) and `registers` (what the meter
counts); this module dresses them as an ECHONET Lite node: every property docs/protocol.md
lists, the history selectors (E5, ED, EF) as two-step Set-then-Get dialogues, the
half-hourly INF of EA/EB, and the faults real meters show (dropped, late or doubled
answers, refusing several EPCs at once) so that every failure path can be driven.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kenshin.echonet import edt as e
from kenshin.echonet.classes import Access
from kenshin.echonet.device import LocalNode, LocalObject, PropertyRefused
from kenshin.echonet.frame import ESV, SMART_METER, Frame, Property
from kenshin.echonet.udp import Address, EchonetDeviceEndpoint
from kenshin.jst import SLOT

from .clock import JST, Clock
from .load import HouseholdProfile, LoadModel
from .registers import MeterRegisters, PowerSource

log = logging.getLogger(__name__)
SIM_MANUFACTURER = 0xFFFFFE  # not a registered maker: nobody mistakes this for a real meter


@dataclass
class MeterFaults:
    """Misbehaviour on request. Rates are probabilities per answer (seeded, repeatable)."""

    drop_rate: float = 0.0  # answer never sent
    duplicate_rate: float = 0.0  # answer sent twice (as some meters do to a retried request)
    delay_s: float = 0.0  # every answer this late (real seconds)
    max_epcs_per_get: int | None = None  # more EPCs than this in one Get: the rest refused
    omit_beyond_limit: bool = False  # ... or left out of a Get_Res (0x72) that looks complete
    refused_epcs: frozenset[int] = frozenset()  # always refused in a Get (SNA, PDC 0)
    drop_next: int = 0  # drop exactly the next N answers (for deterministic tests)
    silent: bool = False  # answer nothing at all (meter gone)


@dataclass
class MeterConfig:
    seed: int = 1
    pv: bool | None = None  # None: the seed decides (about 30 % of homes)
    coefficient: int = 1
    unit: e.EnergyUnit = e.EnergyUnit.KWH_0_1
    digits: int = 6
    history_days: int = 100  # E5 accepts 0..history_days-1
    install: datetime | None = None  # default: history_days before the clock's start
    # When the registers read initial_normal_wh (default: the clock's start). A simulation
    # started again with the same anchor reads the same registers at the same times.
    anchor: datetime | None = None
    initial_normal_wh: int | None = None
    drift: timedelta = timedelta(0)  # the meter's clock minus true time
    release: str = "J"  # Appendix release the meter claims (0x82)
    serial: str | None = None
    announce_delay: timedelta | None = None  # after each half hour; default drawn from seed
    faults: MeterFaults = field(default_factory=MeterFaults)


class SimulatedMeter:
    """Registers plus the ECHONET Lite node that serves them."""

    def __init__(self, clock: Clock, config: MeterConfig | None = None):
        self.clock = clock
        self.config = config = config or MeterConfig()
        self.profile = HouseholdProfile.from_seed(config.seed, pv=config.pv)
        self.load = LoadModel(self.profile)
        anchor = config.anchor or clock.now()
        install = config.install or (anchor - timedelta(days=config.history_days))
        kwargs = {}
        if config.initial_normal_wh is not None:
            kwargs["initial_normal_wh"] = config.initial_normal_wh
        self.registers = MeterRegisters(
            self.load,
            install=install,
            anchor=anchor,
            coefficient=config.coefficient,
            unit_code=int(config.unit),
            digits=config.digits,
            **kwargs,
        )
        rng = random.Random(config.seed)
        self.serial = config.serial or f"SIM{config.seed:09d}"[-12:]
        self.announce_delay = config.announce_delay or timedelta(seconds=rng.randint(5, 90))
        self.history1_day = 0
        self.history2_time = e.HistoryTime(None, 1)
        self.history3_time = e.HistoryTime(None, 1)
        self.object = self._build_object()
        self.node = LocalNode(
            [self.object], manufacturer_code=SIM_MANUFACTURER, identification=self.identification
        )

    def inject(
        self,
        *,
        outages: tuple[tuple[datetime, datetime], ...] = (),
        surges: tuple[tuple[datetime, datetime, int], ...] = (),
    ) -> None:
        """Faults in the meter's past or future (before it is first read): power cuts (no
        power, nothing recorded: its history has no values there, which no refill can
        fetch) and surges (an extra load in W: a faulty appliance)."""

        def slot(moment: datetime) -> int:
            return int(moment.timestamp()) // 1800

        self.load.outages = tuple((slot(a), slot(b)) for a, b in outages)
        self.load.surges = tuple((slot(a), slot(b), w) for a, b, w in surges)
        self.load._means.clear()
        self.registers.gaps = tuple(outages)
        self.registers.forget()

    def attach(self, device: PowerSource) -> None:
        """Put a device (`sim.home`) behind this meter from now on: its power adds to the
        house's at every step, in the instant power and in every register (a battery
        discharging subtracts; past zero the flow is reverse, counted where the meter
        measures it). Devices live on true time: the meter's drift does not move them."""
        self.registers.attach(
            device, since=self.now(), now=self.now, counts_reverse=self.measures_reverse
        )

    @property
    def identification(self) -> bytes:
        """The node profile's 0x83: 0xFE, the maker code, then 13 bytes of this meter's own
        (from its seed and serial), so tools that key nodes by it see every meter."""
        own = hashlib.blake2b(f"{self.config.seed}:{self.serial}".encode(), digest_size=13)
        return b"\xfe" + SIM_MANUFACTURER.to_bytes(3, "big") + own.digest()

    @property
    def measures_reverse(self) -> bool:
        return self.profile.pv_kw > 0

    def now(self) -> datetime:
        """The meter's own clock (true time plus drift)."""
        return self.clock.now() + self.config.drift

    # -- the object ----------------------------------------------------------------------

    def _build_object(self) -> LocalObject:
        obj = LocalObject(SMART_METER)
        cfg = self.config
        obj.set_value(0x80, e.OnOff.ON, access=Access.GET_ANNO)
        obj.set_value(0x81, b"\x00", access=Access.GET_SET)
        obj.set_value(0x82, e.StandardVersion(cfg.release))
        obj.set_value(0x88, e.FaultStatus.NO_FAULT)
        obj.set_value(0x8A, SIM_MANUFACTURER)
        obj.set_value(0x8D, self.serial)
        regs, now = self.registers, self.now
        codec = {epc: spec.codec for epc, spec in obj.spec.properties.items()}

        def serve(epc: int, read, write=None) -> None:  # read() -> typed value
            def set_(edt: bytes) -> None:
                write(codec[epc].decode(edt))

            obj.bind(
                epc, get=lambda: codec[epc].encode(read()), set=None if write is None else set_
            )

        serve(0x97, lambda: now().astimezone(JST).time().replace(second=0, microsecond=0))
        serve(0x98, lambda: now().astimezone(JST).date())
        serve(0xD3, lambda: regs.coefficient)
        serve(0xD7, lambda: regs.digits)
        serve(0xE1, lambda: e.EnergyUnit(regs.unit_code))
        serve(0xE0, lambda: regs.raw(now())[0])
        serve(0xE3, lambda: regs.raw(now())[1])
        serve(0xE7, lambda: regs.instant_power_w(now()))
        serve(0xE8, lambda: e.Currents(*regs.currents_da(now())))
        serve(0xEA, lambda: self._fixed_time(reverse=False))
        serve(0xEB, lambda: self._fixed_time(reverse=True))
        serve(0xE5, lambda: self.history1_day, self._select_history1_day)
        serve(0xE2, lambda: self._history1(reverse=False))
        serve(0xE4, lambda: self._history1(reverse=True))
        serve(0xED, lambda: self.history2_time, self._select_history2)
        serve(0xEC, lambda: self._history2(self.history2_time, 30, regs.history2))
        serve(0xEF, lambda: self.history3_time, self._select_history3)
        serve(0xEE, lambda: self._history2(self.history3_time, 1, regs.history3))
        serve(0xD0, self._one_minute)
        return obj

    def _fixed_time(self, *, reverse: bool) -> e.FixedTimeEnergy:
        at, normal, rev = self.registers.fixed_time(self.now())
        return e.FixedTimeEnergy(at.astimezone(JST), rev if reverse else normal)

    def _one_minute(self) -> e.OneMinuteEnergy:
        at, normal, reverse = self.registers.minute_value(self.now())
        return e.OneMinuteEnergy(at.astimezone(JST), normal, reverse)

    def _select_history1_day(self, day: int) -> None:
        if day >= self.config.history_days:
            raise PropertyRefused(f"this meter keeps {self.config.history_days} days")
        self.history1_day = day

    def _history1(self, *, reverse: bool) -> e.History1:
        values = self.registers.history1(self.now(), self.history1_day, reverse=reverse)
        return e.History1(self.history1_day, tuple(values))

    def _select_history2(self, selector: e.HistoryTime) -> None:
        if selector.at is None:
            raise PropertyRefused("history 2 time must be set")
        self.history2_time = selector

    def _select_history3(self, selector: e.HistoryTime) -> None:
        if selector.at is None:
            raise PropertyRefused("history 3 time must be set")
        self.history3_time = selector

    def _history2(self, selector: e.HistoryTime, step_minutes: int, read) -> e.History2:
        if selector.at is None:
            raise PropertyRefused("select the time first (ED/EF)")
        pairs = read(self.now(), selector.at, selector.count)
        return e.History2(selector.at.astimezone(JST), step_minutes, tuple(pairs))

    # -- announcements -------------------------------------------------------------------

    def fixed_time_announcement(self, tid: int) -> Frame:
        epcs = (0xEA, 0xEB) if self.measures_reverse else (0xEA,)
        return self.node.announcement(SMART_METER, epcs, tid)

    def next_announcement_time(self) -> datetime:
        """True time of the next INF: the meter's next half hour plus its usual delay."""
        meter_now = self.now()
        slot = meter_now.timestamp() // SLOT.total_seconds()
        boundary = datetime.fromtimestamp((slot + 1) * SLOT.total_seconds(), JST)
        return boundary - self.config.drift + self.announce_delay


class MeterEndpoint(EchonetDeviceEndpoint):
    """A simulated meter on UDP: answers (with its configured faults) and announces EA/EB
    each half hour to the controllers that have talked to it, else to the group."""

    CONTROLLER_MEMORY = timedelta(hours=6)

    def __init__(self, meter: SimulatedMeter, **kwargs):
        super().__init__(meter.node, **kwargs)
        self.meter = meter
        self.controllers: dict[Address, datetime] = {}
        self._rng = random.Random(meter.config.seed ^ 0x5EED)
        self._announcer: asyncio.Task | None = None
        self.requests_answered = 0
        # When (simulated Unix seconds) each Get of instant power was answered: what a
        # controller measured, so a test can tell a sample lost from a minute never read.
        self.instant_reads_answered: list[int] = []

    @property
    def faults(self) -> MeterFaults:
        return self.meter.config.faults

    async def start(self, *, announce: bool = True) -> None:
        await super().start(announce=announce)
        if announce:
            self._announcer = asyncio.create_task(self._announce_forever())

    def close(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            self._announcer = None
        super().close()

    def respond(self, frame: Frame, source: Address) -> None:
        if not frame.esv.is_request:
            super().respond(frame, source)  # INFC answers etc.
            return
        self.controllers[source] = self.meter.clock.now()
        faults = self.faults
        if faults.silent:
            return
        if faults.drop_next > 0:
            faults.drop_next -= 1
            self.counters["dropped"] += 1
            return
        if faults.drop_rate and self._rng.random() < faults.drop_rate:
            self.counters["dropped"] += 1
            return
        answers = self._answers(frame)
        copies = 2 if faults.duplicate_rate and self._rng.random() < faults.duplicate_rate else 1
        self.requests_answered += 1
        if frame.esv == ESV.GET and any(p.epc == 0xE7 for p in frame.props):
            self.instant_reads_answered.append(int(self.meter.clock.now().timestamp()))
        if faults.delay_s:
            loop = asyncio.get_running_loop()
            for answer in answers:
                for _ in range(copies):
                    loop.call_later(faults.delay_s, self._send_quietly, answer, source)
            return
        for answer in answers:
            for _ in range(copies):
                self.send(answer, source)

    def _answers(self, frame: Frame) -> list[Frame]:
        answers = self._limited_answers(frame)
        refused = self.faults.refused_epcs
        if frame.esv != ESV.GET or not refused:
            return answers
        out = []
        for answer in answers:
            if any(p.epc in refused for p in answer.props):
                props = tuple(Property(p.epc) if p.epc in refused else p for p in answer.props)
                answer = answer._replace(esv=ESV.GET_SNA, props=props)
            out.append(answer)
        return out

    def _limited_answers(self, frame: Frame) -> list[Frame]:
        limit = self.faults.max_epcs_per_get
        if frame.esv != ESV.GET or limit is None or len(frame.props) <= limit:
            return self.node.handle(frame)
        # A meter that takes only `limit` EPCs per Get answers the rest as refused, or (as
        # some do) answers a Get_Res carrying only the first `limit` of them.
        answers = self.node.handle(frame._replace(props=frame.props[:limit]))
        if self.faults.omit_beyond_limit:
            return answers
        refused = tuple(Property(p.epc) for p in frame.props[limit:])
        return [a._replace(esv=ESV.GET_SNA, props=a.props + refused) for a in answers]

    def _send_quietly(self, frame: Frame, to: Address) -> None:
        if self._transport is not None:
            self.send(frame, to)

    def announce_fixed_time(self) -> None:
        frame = self.meter.fixed_time_announcement(self.next_tid())
        now = self.meter.clock.now()
        recent = [a for a, seen in self.controllers.items() if now - seen < self.CONTROLLER_MEMORY]
        if not recent:
            self.send_to_group(frame)
        for address in recent:
            self.send(frame, address)
        self.counters["announced"] += 1

    async def _announce_forever(self) -> None:
        while True:
            await self.meter.clock.sleep_until(self.meter.next_announcement_time())
            if self._transport is None:
                return
            if not self.faults.silent:
                self.announce_fixed_time()
