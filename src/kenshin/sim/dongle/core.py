"""The emulated dongle as a pure state machine: the host's bytes and time in, bytes out.

`DongleCore` is the whole dongle, and the radio to the meter behind it, with no pty, no
event loop and no real clock, in the manner of h11 and of `kenshin.wisun.lines`:

- `receive_data(data, now)` takes what the host wrote, in any chunks;
- `advance(now)` runs what is due by `now` and by the meter's clock;
- `data_to_send()` hands over what the dongle printed since the last call;
- `next_deadline()` and `next_meter_deadline()` say when `advance` is wanted next.

Two time lines, because the emulated dongle has two. The delays of the radio and the stack
(scan, join, re-authentication, answer latency) are real seconds on whatever monotonic
scale the caller passes as `now`, so that a host's timeouts see them. The PANA lifetime and
the meter's half-hourly announcement count on the meter's simulated clock
(`meter.clock.now()`), so that a test moves them with `ManualClock.advance`. The adapter
(`pty.py`) sleeps on both; a unit test passes numbers and moves a `ManualClock`.

A command line never raises out of `receive_data`: every one is answered (`OK`, a value or
`FAIL ERxx`). The command handlers are in `commands.py`; what the dongle does over time
(scan results, join steps, session expiry) is scheduled here as timers, so that a reset
cancels exactly the stack's timers and leaves frames already on the radio alone.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kenshin.echonet.errors import EchonetDecodeError
from kenshin.echonet.frame import ESV, Frame, Property, decode_frame, encode_frame

from ..meter import SimulatedMeter
from . import commands
from .defs import (
    CHANNELS,
    ECHONET_UDP_PORT,
    MULTICAST_ALL_NODES,
    PANA_UDP_PORT,
    DongleFaults,
    DongleModel,
    Fail,
    State,
    link_local,
    long_ip,
    redact,
)
from .framing import BadSendTo, Command, CommandFramer, Line, SendTo, TooLong

log = logging.getLogger(__name__)

# Timer tags. A reset cancels the stack's timers (STACK, SESSION); SKTERM and the meter
# ending the session cancel SESSION; RADIO (answers in flight) and ANNOUNCE (the meter's
# own half-hourly schedule) belong to the meter and outlive both.
STACK, SESSION, RADIO, ANNOUNCE = "stack", "session", "radio", "announce"


@dataclass(order=True)
class _Timer:
    when: float | datetime
    seq: int
    tag: str = field(compare=False)
    action: Callable[[], None] = field(compare=False)


class DongleCore:
    """One dongle in front of one meter, without I/O (see the module doc and the package
    doc for the behaviour)."""

    def __init__(
        self,
        meter: SimulatedMeter,
        *,
        model: DongleModel = DongleModel.BP35A1,
        route_b_id: str,
        password: str,
        session_lifetime: timedelta | None = None,
        faults: DongleFaults | None = None,
        seed: int = 0,
        pan_id: int | None = None,
        channel: int | None = None,
        meter_mac: int | None = None,
        dongle_mac: int | None = None,
        lqi: int | None = None,
        erxudp_lqi: bool | None = None,
        sa2_supported: bool = True,
        wopt: int = 0x00,
        has_ropt: bool = True,
        wopt_limit: int | None = None,
        scan_threshold: int = 4,
        scan_base_s: float = 0.05,
        scan_cap_s: float = 0.4,
        join_delay_s: float = 0.1,
        reauth_delay_s: float = 0.1,
        answer_latency_s: float = 0.02,
        announce_instance_list: bool = True,
        pana_noise: bool = True,
    ):
        self.meter = meter
        self.model = model
        # The meter's side of PANA: what the dongle's SKSETRBID/SKSETPWD must match.
        self.route_b_id = route_b_id
        self.password = password
        self.session_lifetime = session_lifetime
        self.faults = faults or DongleFaults()
        rng = random.Random(seed)
        self.channel = channel if channel is not None else rng.choice(CHANNELS)
        self.pan_id = pan_id if pan_id is not None else rng.randrange(0x0001, 0xFFFF)
        self.meter_mac = (
            meter_mac if meter_mac is not None else (rng.getrandbits(64) & ~(0x03 << 56))
        )
        self.dongle_mac = (
            dongle_mac if dongle_mac is not None else 0x001D1290_00000000 | rng.getrandbits(32)
        )
        self.lqi = lqi if lqi is not None else rng.randrange(0x50, 0xE0)
        # BP35C2 only: ERXUDP carries LQI when register SA2 is 1 (None), always, or never.
        self.erxudp_lqi = erxudp_lqi
        # False: firmware without register SA2 (SKSREG SA2 ... is FAIL ER06).
        self.sa2_supported = sa2_supported
        if not 33 <= self.channel <= 60 or not 0 <= self.pan_id <= 0xFFFF:
            raise ValueError("channel must be 33..60 and pan_id 0..0xFFFF")
        self.meter_ip = link_local(self.meter_mac)
        self.dongle_ip = link_local(self.dongle_mac)
        self.has_ropt = has_ropt
        self.wopt_limit = wopt_limit
        self.scan_threshold = scan_threshold
        self.scan_base_s = scan_base_s
        self.scan_cap_s = scan_cap_s
        self.join_delay_s = join_delay_s
        self.reauth_delay_s = reauth_delay_s
        self.answer_latency_s = answer_latency_s
        self.announce_instance_list = announce_instance_list
        self.pana_noise = pana_noise
        self.rng = random.Random(seed ^ 0xD0461E)  # faults, noise, TIDs: repeatable
        self._tid = self.rng.randrange(0x10000)
        # Flash: survives SKRESET and power cycles.
        self.wopt = wopt
        self.saved: tuple[dict[str, str], str | None, str | None] | None = None
        # Counters for tests.
        self.frames_sent = 0  # SKSENDTO payloads put on air (EVENT 21 … 00)
        self.frames_refused = 0  # SKSENDTO answered 01/02: never left the dongle
        self.frames_received = 0  # ECHONET frames handed to the host as ERXUDP
        self.frames_dropped = 0  # radio frames lost to `drop_rate`, either way
        self.join_attempts = 0
        self.joins = 0  # EVENT 25 after SKJOIN
        self.reauths = 0  # EVENT 25 after EVENT 29
        self.expiries = 0  # EVENT 29
        self.option_writes = 0  # WOPT commands that wrote flash
        self.commands = 0  # command lines executed (silent ones excluded)
        # Powered: plugged in. Unplugged, it prints nothing and hears nothing.
        self.powered = True
        self._framer = CommandFramer(6 if model.has_side else 5)
        self._out = bytearray()
        self._now = 0.0
        self._seq = itertools.count()
        self._timers: list[_Timer] = []  # real seconds
        self._meter_timers: list[_Timer] = []  # the meter's clock
        self.arib_limited = False
        self._schedule_announcement()
        self.reset_stack()

    # -- state ---------------------------------------------------------------------------

    def reset_stack(self) -> None:
        """Power-on state of the stack (SKRESET, plug). Flash contents stay."""
        self._cancel(STACK, SESSION)
        self.stack = State.IDLE
        self.scanning = False
        self.rbid: str | None = None
        self.pwd: str | None = None
        self.arib_limited = False
        self.registers: dict[str, str] = {
            "S1": f"{self.dongle_mac:016X}",
            "S2": "21",
            "S3": "FFFF",
            "S16": "00000384",
            "SFE": "1",
        }
        if self.model.has_side:
            self.registers["SA2"] = "0"

    @property
    def joined(self) -> bool:
        return self.stack is State.JOINED

    @property
    def state(self) -> str:
        return self.stack.value

    @property
    def echo(self) -> bool:
        return self.registers.get("SFE", "1") != "0"

    @property
    def pair_id(self) -> str:
        return self.route_b_id[-8:].upper().rjust(8, "0")

    def credentials_ok(self) -> bool:
        return self.rbid == self.route_b_id and self.pwd == self.password

    def scan_seconds(self, duration: int) -> float:
        """Real seconds a scan of this duration takes here (each step doubles)."""
        return min(self.scan_cap_s, self.scan_base_s * 2.0 ** (duration - 3))

    # -- power ---------------------------------------------------------------------------

    def unplug(self) -> None:
        """Power off: the session is lost, and input and output not yet taken with it."""
        self.reset_stack()
        self.powered = False
        self._framer.clear()
        self._out.clear()

    def plug(self) -> None:
        """Power on: the stack at its power-on state; clears `faults.silent`."""
        self.faults.silent = False
        self.reset_stack()
        self.powered = True
        self._framer.clear()
        self._out.clear()

    # -- time ----------------------------------------------------------------------------

    def after(self, delay: float, action: Callable[[], None], tag: str = STACK) -> None:
        """Run `action` `delay` real seconds from now."""
        heapq.heappush(self._timers, _Timer(self._now + delay, next(self._seq), tag, action))

    def at_meter_time(self, moment: datetime, action: Callable[[], None], tag: str) -> None:
        """Run `action` once the meter's clock shows `moment`."""
        heapq.heappush(self._meter_timers, _Timer(moment, next(self._seq), tag, action))

    def _cancel(self, *tags: str) -> None:
        for timers in (self._timers, self._meter_timers):
            timers[:] = [t for t in timers if t.tag not in tags]
            heapq.heapify(timers)

    def next_deadline(self) -> float | None:
        """The real time (the scale of `now`) of the next timer, if any."""
        return self._timers[0].when if self._timers else None  # type: ignore[return-value]

    def next_meter_deadline(self) -> datetime | None:
        """The meter-clock moment of the next timer on that clock, if any."""
        return self._meter_timers[0].when if self._meter_timers else None  # type: ignore[return-value]

    def advance(self, now: float) -> None:
        """Run every timer due by real time `now` and by the meter's clock, in order; a
        timer's follow-ups that fall due by then run too."""
        while True:
            if self._timers and self._timers[0].when <= now:
                timer = heapq.heappop(self._timers)
                # While it runs, time is its deadline: what it schedules is timed from it.
                self._now = max(self._now, timer.when)  # type: ignore[type-var]
            elif self._meter_timers and self._meter_timers[0].when <= self.meter.clock.now():
                timer = heapq.heappop(self._meter_timers)
                self._now = max(self._now, now)
            else:
                break
            timer.action()
        self._now = max(self._now, now)

    # -- input ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """What the host wrote at real time `now`; timers due before it run first."""
        self.advance(now)
        if self.faults.silent or not self.powered:
            return  # hung firmware reads and throws away; unplugged hears nothing
        self._framer.feed(data)
        while not self.faults.silent and (command := self._framer.next_command()) is not None:
            self._run(command)
        if self.faults.silent:
            self._framer.clear()

    def _run(self, command: Command) -> None:
        if isinstance(command, TooLong):
            self.emit("FAIL ER09")
        elif isinstance(command, BadSendTo):
            self._echo(command.header)
            self.emit("FAIL ER06")
        elif isinstance(command, SendTo):
            self._echo(command.header)
            self.commands += 1
            self._answer(lambda: commands.sksendto(self, command.fields, command.payload))
        elif isinstance(command, Line):
            self._run_line(command.raw)

    def _run_line(self, raw: bytes) -> None:
        log.debug("<- %s", redact(raw))
        self._echo(raw)
        self.commands += 1
        words = raw.decode("latin-1").split(" ")
        name, args = words[0], [w for w in words[1:] if w != ""]
        self._answer(lambda: commands.run(self, name, args))

    def _answer(self, handler: Callable[[], None]) -> None:
        try:
            handler()
        except Fail as fail:
            self.emit(f"FAIL {fail.code}")

    def _echo(self, line: bytes) -> None:
        if self.echo:
            self.emit(line)

    # -- output --------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything printed since the last call (and forget it)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def emit(self, line: str | bytes, *, log_as: str | None = None) -> None:
        """Print one output line (CRLF added), garbled if a fault asks for it."""
        if self.faults.silent or not self.powered:
            return
        body = line.encode("ascii") if isinstance(line, str) else bytes(line)
        if self.faults.garble_next > 0:
            self.faults.garble_next -= 1
            body = self._garble(body)
            log.debug("-> (garbled) %r", body[:80])
        else:
            log.debug("-> %s", log_as if log_as is not None else redact(body))
        self._out += body + b"\r\n"

    def _garble(self, body: bytes) -> bytes:
        out = bytearray(body or b"?")
        count = self.rng.randint(1, max(1, len(out) // 8))
        for pos in self.rng.sample(range(len(out)), min(count, len(out))):
            choices = [b for b in range(256) if b not in (0x0D, 0x0A, out[pos])]
            out[pos] = self.rng.choice(choices)
        return bytes(out)

    def event(self, number: int, address: ipaddress.IPv6Address, param: str | None = None):
        parts = [f"EVENT {number:02X}", long_ip(address)]
        if self.model.has_side:
            parts.append("0")
        if param is not None:
            parts.append(param)
        self.emit(" ".join(parts))

    def erxudp(
        self,
        data: bytes,
        *,
        src: ipaddress.IPv6Address,
        dst: ipaddress.IPv6Address,
        port: int = ECHONET_UDP_PORT,
        secured: bool = True,
    ) -> None:
        fields = [
            "ERXUDP",
            long_ip(src),
            long_ip(dst),
            f"{port:04X}",
            f"{port:04X}",
            f"{self.meter_mac:016X}",
        ]
        if self.model.has_side and self._erxudp_shows_lqi():
            fields.append(f"{self.lqi:02X}")
        fields.append("1" if secured else "0")
        if self.model.has_side:
            fields.append("0")
        fields.append(f"{len(data):04X}")
        head = " ".join(fields) + " "
        payload = data.hex().upper().encode("ascii") if self.wopt & 0x01 else data
        self.emit(head.encode("ascii") + payload, log_as=f"{head}<{len(data)} bytes>")

    def _erxudp_shows_lqi(self) -> bool:
        if self.erxudp_lqi is not None:
            return self.erxudp_lqi
        return self.registers.get("SA2") == "1"

    # -- the PANA session ----------------------------------------------------------------

    def pana_frame(self) -> None:
        """A PANA message from the meter as the host sees it during a join (noise to it)."""
        size = self.rng.randrange(40, 100)
        body = bytes(4) + bytes(self.rng.getrandbits(8) for _ in range(size - 4))
        self.erxudp(body, src=self.meter_ip, dst=self.dongle_ip, port=PANA_UDP_PORT, secured=False)

    def session_up(self) -> None:
        self.stack = State.JOINED
        self.event(0x25, self.meter_ip)
        if self.session_lifetime is not None:
            expiry = self.meter.clock.now() + self.session_lifetime
            self.at_meter_time(expiry, self._session_expired, SESSION)
        if self.announce_instance_list:
            self.after(self.answer_latency_s * 2, self._announce_instances)

    def _session_expired(self) -> None:
        if self.stack is not State.JOINED:
            return
        self.expiries += 1
        self.stack = State.REAUTH
        self.event(0x29, self.meter_ip)
        self.after(self.reauth_delay_s, self._reauthenticated, SESSION)

    def _reauthenticated(self) -> None:
        if self.stack is not State.REAUTH:
            return
        if self.credentials_ok() and not self.meter.config.faults.silent:
            self.reauths += 1
            self.session_up()
        else:
            self.stack = State.IDLE
            self.event(0x24, self.meter_ip)

    def end_session(self) -> None:
        """The session is gone (SKTERM, the meter's EVENT 26): its timers with it."""
        self._cancel(SESSION)
        self.stack = State.IDLE

    def meter_ends_session(self) -> None:
        """The meter ends the PANA session (EVENT 26)."""
        if self.stack in (State.JOINED, State.REAUTH):
            self.end_session()
            self.event(0x26, self.meter_ip)

    def arib_limit(self, active: bool) -> None:
        """The ARIB STD-T108 transmit-time limit is reached (EVENT 32) or released (33);
        while it holds, SKSENDTO answers EVENT 21 … 01."""
        if active != self.arib_limited:
            self.arib_limited = active
            self.event(0x32 if active else 0x33, self.dongle_ip)

    # -- the meter behind the radio ------------------------------------------------------

    def meter_receives(self, payload: bytes) -> None:
        try:
            frame = decode_frame(payload)
        except EchonetDecodeError:
            return
        if not isinstance(frame, Frame):
            return
        faults = self.meter.config.faults
        if faults.silent:
            return
        if frame.esv.is_request:
            if faults.drop_next > 0:
                faults.drop_next -= 1
                return
            if faults.drop_rate and self.rng.random() < faults.drop_rate:
                return
        answers = self._meter_answers(frame)
        copies = 2 if faults.duplicate_rate and self.rng.random() < faults.duplicate_rate else 1
        delay = self.answer_latency_s + faults.delay_s + self.faults.delay_s
        for answer in answers:
            data = encode_frame(answer)
            for _ in range(copies):
                self.after(delay, lambda d=data: self._radio_to_host(d, self.dongle_ip), RADIO)

    def _meter_answers(self, frame: Frame) -> list[Frame]:
        limit = self.meter.config.faults.max_epcs_per_get
        if frame.esv != ESV.GET or limit is None or len(frame.props) <= limit:
            return self.meter.node.handle(frame)
        answers = self.meter.node.handle(frame._replace(props=frame.props[:limit]))
        refused = tuple(Property(p.epc) for p in frame.props[limit:])
        return [a._replace(esv=ESV.GET_SNA, props=a.props + refused) for a in answers]

    def _radio_to_host(self, data: bytes, destination: ipaddress.IPv6Address) -> None:
        if self.stack is not State.JOINED or not self.powered:
            return  # no session to decrypt it with: lost
        if self.faults.drop_rate and self.rng.random() < self.faults.drop_rate:
            self.frames_dropped += 1
            return
        self.frames_received += 1
        self.erxudp(data, src=self.meter_ip, dst=destination)

    def _next_tid(self) -> int:
        self._tid = (self._tid + 1) & 0xFFFF
        return self._tid

    def _announce_instances(self) -> None:
        if not self.meter.config.faults.silent:
            frame = self.meter.node.instance_list_announcement(self._next_tid())
            self._radio_to_host(encode_frame(frame), MULTICAST_ALL_NODES)

    def _schedule_announcement(self) -> None:
        moment = self.meter.next_announcement_time()
        self.at_meter_time(moment, self._announce_fixed_time, ANNOUNCE)

    def _announce_fixed_time(self) -> None:
        if self.stack is State.JOINED and not self.meter.config.faults.silent:
            frame = self.meter.fixed_time_announcement(self._next_tid())
            self._radio_to_host(encode_frame(frame), MULTICAST_ALL_NODES)
        # Never twice for one half hour, even if the clock stands still.
        later = self.meter.clock.now() + timedelta(seconds=1)
        self.at_meter_time(later, self._schedule_announcement, ANNOUNCE)
