"""A Wi-SUN SKSTACK IP dongle (ROHM BP35A1 or BP35C2 dialect) on a real pseudo-terminal.

The emulator opens a pty pair, and a host program opens `.path` exactly as it would open
`/dev/ttyUSB0`: 115200 8N1, text commands ending in CRLF, binary SKSENDTO payloads and
ERXUDP data read byte-exactly. Behind the radio sits a `SimulatedMeter`: the ECHONET Lite
frames inside SKSENDTO go to `meter.node.handle`, its answers and its half-hourly INF
come back as ERXUDP. docs/skstack.md is the contract for every line format.

Choices made where the vendors' references are silent or vague (each can be relied on):

- Echo (register SFE, on by default) is the command line as received plus CRLF, written
  before the answer. For SKSENDTO the echo is the text up to and including the space
  after the length field, then CRLF; the binary payload is never echoed. A host need not
  end the payload with CRLF; a stray CRLF after it is taken as an empty line, and empty
  lines are ignored (no echo, no answer).
- FAIL codes as the vendors number them: ER04 unknown command (or ROPT when
  `has_ropt` is off), ER05 wrong number of arguments, ER06 an argument of the wrong form
  or range (bad hex, bad address, channel outside 21..3C), ER09 an input line longer than
  `MAX_LINE` bytes, ER10 accepted but could not be done (SKJOIN while joining or joined,
  SKSCAN while scanning, SKTERM without a session, WOPT past `wopt_limit`, SKLOAD with
  nothing saved).
- SKRESET (and a power cycle, `unplug()` + `plug()`) puts the stack back to its power-on
  state: the PANA session ends without any EVENT, scans and joins under way are
  abandoned, every register returns to its default (S2 21, S3 FFFF, SFE 1, SA2 0) and the
  B-route ID and password are forgotten, so a host must send SKSETRBID / SKSETPWD / SKSREG
  again. What `WOPT` and `SKSAVE` wrote to flash survives both.
- `silent` models a hung firmware: input is read and thrown away (SKRESET cannot be heard)
  and nothing is written, not even events. Internal timers keep running. It ends when a
  test clears `faults.silent` (the dongle goes on from wherever it is) or by a power cycle
  (`unplug()` then `plug()` clears `silent` and resets the stack).
- SKSENDTO is always answered `EVENT 21 <ip6> [side] <param>` then `OK`: 00 when the frame
  went on air (it may still be lost: `drop_rate` losses are silent, as real radio losses
  are), 01 when there is no PANA session, while the dongle re-authenticates after EVENT 29,
  and while the ARIB transmit limit is in force; 02 when the destination is neither the
  meter nor ff02::1 (neighbour solicitation goes unanswered). Frames sent with `<sec>` 0
  reach the meter but are ignored by it: a B-route meter only talks encrypted.
- SKJOIN: `OK`, then `EVENT 21 … 02`, `EVENT 02`, (with `pana_noise`) ERXUDP PANA frames
  on port 02CC interleaved with `EVENT 21 … 00`, then after `join_delay_s` `EVENT 25`
  (joined) or `EVENT 24`. It succeeds only for the meter's link-local address, S2 = the
  meter's channel, S3 = its PAN ID, the right ID and password, a meter that is not
  silent, and no pending `join_failures`.
- After EVENT 25 the meter announces its instance list (INF of 0xD5, as the AIF start-up
  sequence has it) when `announce_instance_list` is on, and every half hour its EA/EB INF.
  Announcements are sent to ff02::1 (the dst field of their ERXUDP); answers to the
  dongle's own link-local address.
- PANA lifetime counts on the meter's clock. At expiry: `EVENT 29`, `reauth_delay_s` real
  seconds during which frames are refused (EVENT 21 … 01) and answers in flight are lost,
  then `EVENT 25`, or `EVENT 24` (session gone) if the dongle's credentials no longer match
  `route_b_id`/`password` or the meter has gone silent.
- SKTERM with a session: `OK`, then `EVENT 27` (or `EVENT 28`, termination timed out, if the
  meter is silent). `EVENT 28` is the vendors' "no answer to the termination request"; a
  SKTERM with no session is `FAIL ER10`.
- SKSCAN: `OK`, then per PAN found `EVENT 20` + the EPANDESC block, then `EVENT 22` with the
  dongle's own address. The scan takes `scan_seconds(duration)` real seconds (0.05 s at
  duration 3, doubling per step, capped at `scan_cap_s`) and finds the meter only when
  duration >= `scan_threshold`, its channel is in the mask, and neither `hidden_from_scan`
  nor `scan_misses` says otherwise. Mode 2 blocks carry PairID (the last 8 characters of
  the B-route ID, as the meter's beacon IE does), mode 3 blocks do not; mode 0 is an energy
  scan (`EEDSCAN` + channel/RSSI pairs, then `EVENT 1F`).
- ERXUDP on the BP35C2 carries the LQI field only while register SA2 is 1 (it is 0 at
  power-on and after SKRESET), as the real one does; `erxudp_lqi` True or False forces
  either form. `sa2_supported=False` models firmware without SA2: `SKSREG SA2 ...` is
  `FAIL ER06` and ERXUDP stays without LQI.
- The B-route ID and password are never logged: command and echo lines are logged with
  them replaced by asterisks, and `repr()` shows neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import random
import re
import tty
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import ClassVar

from kenshin.echonet.errors import EchonetDecodeError
from kenshin.echonet.frame import ESV, Frame, Property, decode_frame, encode_frame

from .meter import SimulatedMeter

__all__ = ["DongleEmulator", "DongleFaults", "DongleModel"]

log = logging.getLogger(__name__)

ECHONET_UDP_PORT = 0x0E1A
PANA_UDP_PORT = 0x02CC
MULTICAST_ALL_NODES = ipaddress.IPv6Address("ff02::1")
MAX_LINE = 1024  # longest command line the dongle buffers before giving up (FAIL ER09)
MAX_PAYLOAD = 1232  # the IPv6 minimum MTU less headers: SKSENDTO refuses longer data
MAX_OUTPUT_BUFFER = 1 << 20  # bytes queued for a host that does not read: the rest is lost
CHANNELS = range(33, 61)  # 920 MHz band logical channels 33..60 (0x21..0x3C)


class DongleModel(Enum):
    BP35A1 = "BP35A1"  # also RL7023 Stick-D/IPS: no side fields
    BP35C2 = "BP35C2"  # also BP35C0, RL7023 Stick-D/DSS, RATOC RS-WSUHA-P: side fields

    @property
    def has_side(self) -> bool:
        return self is DongleModel.BP35C2


_VERSIONS = {DongleModel.BP35A1: "1.2.10", DongleModel.BP35C2: "1.5.2"}
_APP_VERSIONS = {DongleModel.BP35A1: "rev26e", DongleModel.BP35C2: "rev1.0.3"}


@dataclass
class DongleFaults:
    """Misbehaviour on request; change the fields while the emulator runs."""

    drop_rate: float = 0.0  # probability a radio frame (either way) is lost
    delay_s: float = 0.0  # extra real seconds before the meter's answers arrive
    hidden_from_scan: bool = False  # scans find nothing
    scan_misses: int = 0  # the next N scans find nothing
    garble_next: int = 0  # the next N output lines get random bytes (CRLF kept)
    silent: bool = False  # hung firmware: reads nothing, writes nothing (see module doc)
    join_failures: int = 0  # the next N SKJOINs end in EVENT 24 whatever the credentials


class _State(Enum):
    IDLE = "idle"
    JOINING = "joining"
    JOINED = "joined"
    REAUTH = "reauthenticating"


class _Fail(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


_REDACT = (
    (re.compile(rb"^(SKSETRBID )\S+"), rb"\1********"),
    (re.compile(rb"^(SKSETPWD \S+ )\S+"), rb"\1********"),
    (re.compile(rb"^(  PairID:)\S+"), rb"\1********"),  # the end of the B-route ID
)


def _redact(line: bytes) -> str:
    for pattern, replacement in _REDACT:
        line = pattern.sub(replacement, line)
    return line.decode("latin-1")


def _long_ip(address: ipaddress.IPv6Address) -> str:
    return address.exploded.upper()


def _link_local(mac: int) -> ipaddress.IPv6Address:
    """fe80::/64 with the interface ID from a 64-bit MAC (universal/local bit flipped)."""
    return ipaddress.IPv6Address((0xFE80 << 112) | (mac ^ (0x02 << 56)))


def _hex(text: str, *, digits: int | None = None, max_digits: int | None = None) -> int:
    """Parse an upper- or lower-case hex argument; FAIL ER06 if it is not one."""
    if not text or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise _Fail("ER06")
    if digits is not None and len(text) != digits:
        raise _Fail("ER06")
    if max_digits is not None and len(text) > max_digits:
        raise _Fail("ER06")
    return int(text, 16)


def _ip(text: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise _Fail("ER06") from None


class DongleEmulator:
    """One dongle in front of one meter, reachable through a pty (see the module doc)."""

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
        link: Path | str | None = None,
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
        self.meter_ip = _link_local(self.meter_mac)
        self.dongle_ip = _link_local(self.dongle_mac)
        self.link = Path(link) if link is not None else None
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
        self._rng = random.Random(seed ^ 0xD0461E)  # faults, noise, TIDs: repeatable
        self._tid = self._rng.randrange(0x10000)
        # Flash: survives SKRESET and power cycles.
        self.wopt = wopt
        self._saved: tuple[dict[str, str], str | None, str | None] | None = None
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
        # pty
        self.path: str | None = None
        self._previous_path: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self._writer_armed = False
        self._announcer: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._session_task: asyncio.Task | None = None
        self._arib_limited = False
        self._reset_stack()

    def __repr__(self) -> str:
        return (
            f"<DongleEmulator {self.model.value} path={self.path!r} state={self._state.value} "
            f"channel={self.channel} pan_id={self.pan_id:04X}>"
        )

    # -- state ---------------------------------------------------------------------------

    def _reset_stack(self) -> None:
        """Power-on state of the stack (SKRESET, plug). Flash contents stay."""
        for task in list(self._tasks):
            with contextlib.suppress(RuntimeError):  # close() after the loop has ended
                task.cancel()
        self._tasks.clear()
        self._session_task = None
        self._state = _State.IDLE
        self._scanning = False
        self._rbid: str | None = None
        self._pwd: str | None = None
        self._arib_limited = False
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
        return self._state is _State.JOINED

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def echo(self) -> bool:
        return self.registers.get("SFE", "1") != "0"

    @property
    def pair_id(self) -> str:
        return self.route_b_id[-8:].upper().rjust(8, "0")

    def _credentials_ok(self) -> bool:
        return self._rbid == self.route_b_id and self._pwd == self.password

    def _spawn(self, coro) -> asyncio.Task:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> DongleEmulator:
        self._loop = asyncio.get_running_loop()
        self._open_pty()
        self._announcer = self._loop.create_task(self._announce_forever())
        return self

    async def __aenter__(self) -> DongleEmulator:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything and remove the pty (and the link)."""
        if self._announcer is not None:
            with contextlib.suppress(RuntimeError):
                self._announcer.cancel()
            self._announcer = None
        self._reset_stack()
        self._close_pty()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def unplug(self) -> None:
        """Pull the dongle out: the pty goes away (the host sees EOF / I/O errors), the
        link is removed, and the session is lost."""
        self._reset_stack()
        self._close_pty()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        log.info("dongle unplugged")

    def plug(self) -> None:
        """Plug it back in: a power-on dongle on a NEW pty (`path` changes; the link, if
        any, follows). Clears `faults.silent`."""
        if self._loop is None:
            raise RuntimeError("start() the emulator first")
        self._close_pty()
        self.faults.silent = False
        self._reset_stack()
        self._open_pty()
        log.info("dongle plugged in at %s", self.path)

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        if name == self._previous_path:  # a new device name, as a re-plugged stick gets
            master2, slave2 = os.openpty()
            os.close(master)
            os.close(slave)
            master, slave, name = master2, slave2, os.ttyname(slave2)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave, self.path = master, slave, name
        self._previous_path = name
        self._inbuf.clear()
        self._outbuf.clear()
        assert self._loop is not None
        self._loop.add_reader(master, self._on_readable)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(name, tmp)
            os.replace(tmp, self.link)

    def _close_pty(self) -> None:
        if self._master is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._master)
                if self._writer_armed:
                    self._loop.remove_writer(self._master)
            self._writer_armed = False
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        self.path = None
        self._inbuf.clear()
        self._outbuf.clear()

    # -- bytes in and out ----------------------------------------------------------------

    def _on_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open right now: nothing to read
                return
            raise
        if not data:
            return
        if self.faults.silent:
            self._inbuf.clear()
            return
        self._inbuf += data
        self._consume()

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        if len(self._outbuf) + len(data) > MAX_OUTPUT_BUFFER:
            log.warning("host is not reading: %d bytes of output lost", len(data))
            return
        self._outbuf += data
        self._flush()

    def _flush(self) -> None:
        if self._master is None:
            return
        while self._outbuf:
            try:
                written = os.write(self._master, self._outbuf)
            except BlockingIOError:
                break
            except OSError as exc:
                log.warning("pty write failed: %s", exc)
                self._outbuf.clear()
                break
            del self._outbuf[:written]
        assert self._loop is not None
        if self._outbuf and not self._writer_armed:
            self._loop.add_writer(self._master, self._flush)
            self._writer_armed = True
        elif not self._outbuf and self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False

    def _emit(self, line: str | bytes, *, log_as: str | None = None) -> None:
        """Write one output line (CRLF added), garbled if a fault asks for it."""
        if self.faults.silent or self._master is None:
            return
        body = line.encode("ascii") if isinstance(line, str) else bytes(line)
        if self.faults.garble_next > 0:
            self.faults.garble_next -= 1
            body = self._garble(body)
            log.debug("-> (garbled) %r", body[:80])
        else:
            log.debug("-> %s", log_as if log_as is not None else _redact(body))
        self._write(body + b"\r\n")

    def _garble(self, body: bytes) -> bytes:
        out = bytearray(body or b"?")
        count = self._rng.randint(1, max(1, len(out) // 8))
        for pos in self._rng.sample(range(len(out)), min(count, len(out))):
            choices = [b for b in range(256) if b not in (0x0D, 0x0A, out[pos])]
            out[pos] = self._rng.choice(choices)
        return bytes(out)

    def _event(self, number: int, address: ipaddress.IPv6Address, param: str | None = None):
        parts = [f"EVENT {number:02X}", _long_ip(address)]
        if self.model.has_side:
            parts.append("0")
        if param is not None:
            parts.append(param)
        self._emit(" ".join(parts))

    def _erxudp(
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
            _long_ip(src),
            _long_ip(dst),
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
        self._emit(head.encode("ascii") + payload, log_as=f"{head}<{len(data)} bytes>")

    def _erxudp_shows_lqi(self) -> bool:
        if self.erxudp_lqi is not None:
            return self.erxudp_lqi
        return self.registers.get("SA2") == "1"

    # -- command parsing -----------------------------------------------------------------

    def _consume(self) -> None:
        buf = self._inbuf
        while buf:
            if self.faults.silent:
                buf.clear()
                return
            if buf[0] in (0x0D, 0x0A):  # end of the previous line, or an empty line
                del buf[0]
                continue
            if buf.startswith(b"SKSENDTO "):
                taken = self._take_sendto()
                if taken is None:
                    return  # wait for more bytes
                if taken:
                    continue
            end = next((i for i, b in enumerate(buf) if b in (0x0D, 0x0A)), -1)
            if end < 0:
                if len(buf) > MAX_LINE:
                    buf.clear()
                    self._emit("FAIL ER09")
                return
            line = bytes(buf[:end])
            del buf[: end + 1]
            self._run_line(line)

    def _take_sendto(self) -> bool | None:
        """Take a SKSENDTO header and its binary payload off the input. None: incomplete;
        False: the line ended before the header did (handled as an ordinary line)."""
        buf = self._inbuf
        count = 6 if self.model.has_side else 5  # handle ip port sec [side] len
        pos = len(b"SKSENDTO ")
        fields: list[str] = []
        for _ in range(count):
            space = buf.find(b" ", pos)
            eol = next((i for i in range(pos, len(buf)) if buf[i] in (0x0D, 0x0A)), -1)
            if eol >= 0 and (space < 0 or eol < space):
                return False
            if space < 0:
                if len(buf) > MAX_LINE:
                    buf.clear()
                    self._emit("FAIL ER09")
                    return True
                return None
            fields.append(buf[pos:space].decode("latin-1"))
            pos = space + 1
        header = bytes(buf[:pos])
        try:
            length = _hex(fields[-1], digits=4)
        except _Fail:
            del buf[:pos]
            self._echo(header)
            self._emit("FAIL ER06")
            return True
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        self._echo(header)
        self.commands += 1
        try:
            self._sksendto(fields, payload)
        except _Fail as fail:
            self._emit(f"FAIL {fail.code}")
        return True

    def _echo(self, line: bytes) -> None:
        if self.echo:
            self._emit(line)

    def _run_line(self, raw: bytes) -> None:
        log.debug("<- %s", _redact(raw))
        self._echo(raw)
        self.commands += 1
        words = raw.decode("latin-1").split(" ")
        name, args = words[0], [w for w in words[1:] if w != ""]
        handler = self._COMMANDS.get(name)
        try:
            if handler is None or (name == "ROPT" and not self.has_ropt):
                raise _Fail("ER04")
            if name == "SKSENDTO":  # a SKSENDTO line that ended before its data
                raise _Fail("ER05")
            handler(self, args)
        except _Fail as fail:
            self._emit(f"FAIL {fail.code}")

    @staticmethod
    def _nargs(args: list[str], *counts: int) -> None:
        if len(args) not in counts:
            raise _Fail("ER05")

    # -- commands ------------------------------------------------------------------------

    def _skver(self, args: list[str]) -> None:
        self._nargs(args, 0)
        self._emit(f"EVER {_VERSIONS[self.model]}")
        self._emit("OK")

    def _skappver(self, args: list[str]) -> None:
        self._nargs(args, 0)
        self._emit(f"EAPPVER {_APP_VERSIONS[self.model]}")
        self._emit("OK")

    def _skinfo(self, args: list[str]) -> None:
        self._nargs(args, 0)
        channel = int(self.registers["S2"], 16)
        pan = int(self.registers["S3"], 16)
        fields = [
            "EINFO",
            _long_ip(self.dongle_ip),
            f"{self.dongle_mac:016X}",
            f"{channel:02X}",
            f"{pan:04X}",
            # The fifth field is the side (0 B-route, 1 HAN) on the BP35C series; the
            # BP35A1 has no sides and prints FFFE there. Hosts tell the dialects apart by it.
            "0" if self.model.has_side else "FFFE",
        ]
        self._emit(" ".join(fields))
        self._emit("OK")

    def _skreset(self, args: list[str]) -> None:
        self._nargs(args, 0)
        self._emit("OK")
        self._reset_stack()

    def _sksreg(self, args: list[str]) -> None:
        self._nargs(args, 1, 2)
        reg = args[0].upper()
        if not re.fullmatch(r"S[0-9A-F]{1,2}", reg):
            raise _Fail("ER06")
        # SA2 (B-route side on dual-side firmware) is accepted by the BP35A1 too and does
        # nothing there: an open B-route library that runs on real BP35A1s sets it always.
        if reg == "SA2" and not self.sa2_supported:
            raise _Fail("ER06")
        if len(args) == 1:
            self._emit(f"ESREG {self.registers.get(reg, '0')}")
            self._emit("OK")
            return
        value = args[1]
        if reg == "S1":
            raise _Fail("ER06")  # the MAC address is read-only
        if reg == "S2":
            number = _hex(value, max_digits=2)
            if number not in CHANNELS:
                raise _Fail("ER06")
            value = f"{number:02X}"
        elif reg == "S3":
            value = f"{_hex(value, max_digits=4):04X}"
        elif reg in ("SFE", "SA2"):
            if value not in ("0", "1"):
                raise _Fail("ER06")
        else:
            value = f"{_hex(value, max_digits=32):X}"
        self.registers[reg] = value
        self._emit("OK")

    def _sksetrbid(self, args: list[str]) -> None:
        self._nargs(args, 1)
        if len(args[0]) != 32:
            raise _Fail("ER06")
        self._rbid = args[0]
        self._emit("OK")

    def _sksetpwd(self, args: list[str]) -> None:
        self._nargs(args, 2)
        length = _hex(args[0], max_digits=2)
        if not 1 <= length <= 32 or len(args[1]) != length:
            raise _Fail("ER06")
        self._pwd = args[1]
        self._emit("OK")

    def _skll64(self, args: list[str]) -> None:
        self._nargs(args, 1)
        mac = _hex(args[0], digits=16)
        self._emit(_long_ip(_link_local(mac)))  # no OK after this one

    def _skscan(self, args: list[str]) -> None:
        self._nargs(args, 4 if self.model.has_side else 3)
        mode = _hex(args[0], max_digits=1)
        mask = _hex(args[1], digits=8)
        duration = _hex(args[2], max_digits=2)
        if mode not in (0, 2, 3) or duration > 14:
            raise _Fail("ER06")
        if self.model.has_side and args[3] not in ("0", "1"):
            raise _Fail("ER06")
        if self._scanning or self._state is _State.JOINING:
            raise _Fail("ER10")
        self._scanning = True
        self._emit("OK")
        self._spawn(self._scan(mode, mask, duration, side=args[3] if len(args) > 3 else "0"))

    def scan_seconds(self, duration: int) -> float:
        """Real seconds a scan of this duration takes here (each step doubles)."""
        return min(self.scan_cap_s, self.scan_base_s * 2.0 ** (duration - 3))

    async def _scan(self, mode: int, mask: int, duration: int, side: str) -> None:
        try:
            total = self.scan_seconds(duration)
            await asyncio.sleep(total / 2)
            if mode == 0:
                pairs = []
                for channel in CHANNELS:
                    if mask >> (channel - 33) & 1:
                        rssi = 0xC8 if channel == self.channel else self._rng.randrange(0x10, 0x30)
                        pairs.append(f"{channel:02X} {rssi:02X}")
                await asyncio.sleep(total / 2)
                self._emit("EEDSCAN")
                self._emit(" ".join(pairs))
                self._event(0x1F, self.dongle_ip)
                return
            found = (
                duration >= self.scan_threshold
                and mask >> (self.channel - 33) & 1
                and side == "0"
                and not self.faults.hidden_from_scan
                and not self.meter.config.faults.silent
            )
            if found and self.faults.scan_misses > 0:
                self.faults.scan_misses -= 1
                found = False
            if found:
                self._event(0x20, self.meter_ip)
                self._emit("EPANDESC")
                self._emit(f"  Channel:{self.channel:02X}")
                self._emit("  Channel Page:09")
                self._emit(f"  Pan ID:{self.pan_id:04X}")
                self._emit(f"  Addr:{self.meter_mac:016X}")
                self._emit(f"  LQI:{self.lqi:02X}")
                if self.model.has_side:
                    self._emit("  Side:0")
                if mode == 2:
                    self._emit(f"  PairID:{self.pair_id}")
            await asyncio.sleep(total / 2)
            self._event(0x22, self.dongle_ip)
        finally:
            self._scanning = False

    def _skjoin(self, args: list[str]) -> None:
        self._nargs(args, 1)
        target = _ip(args[0])
        if self._state is not _State.IDLE or self._scanning:
            raise _Fail("ER10")
        self.join_attempts += 1
        ok = (
            target == self.meter_ip
            and int(self.registers["S2"], 16) == self.channel
            and int(self.registers["S3"], 16) == self.pan_id
            and self._credentials_ok()
            and not self.meter.config.faults.silent
        )
        if self.faults.join_failures > 0:
            self.faults.join_failures -= 1
            ok = False
        reachable = target == self.meter_ip and int(self.registers["S2"], 16) == self.channel
        self._state = _State.JOINING
        self._emit("OK")
        self._spawn(self._join(target, ok, reachable))

    async def _join(self, target: ipaddress.IPv6Address, ok: bool, reachable: bool) -> None:
        step = self.join_delay_s / 4
        await asyncio.sleep(step)
        self._event(0x21, target, "02")
        if reachable:
            self._event(0x02, target)
            for _ in range(2):
                await asyncio.sleep(step)
                if self.pana_noise:
                    self._pana_noise()
                self._event(0x21, target, "00")
        await asyncio.sleep(self.join_delay_s - 3 * step)
        if ok:
            self.joins += 1
            self._session_up()
        else:
            self._state = _State.IDLE
            self._event(0x24, target)

    def _pana_noise(self) -> None:
        size = self._rng.randrange(40, 100)
        body = bytes(4) + bytes(self._rng.getrandbits(8) for _ in range(size - 4))
        self._erxudp(body, src=self.meter_ip, dst=self.dongle_ip, port=PANA_UDP_PORT, secured=False)

    def _session_up(self) -> None:
        self._state = _State.JOINED
        self._event(0x25, self.meter_ip)
        if self.session_lifetime is not None:
            self._session_task = self._spawn(self._session_timer(self.meter.clock.now()))
        if self.announce_instance_list:
            self._spawn(self._announce_instances())

    async def _session_timer(self, started: datetime) -> None:
        assert self.session_lifetime is not None
        await self.meter.clock.sleep_until(started + self.session_lifetime)
        if self._state is not _State.JOINED:
            return
        self.expiries += 1
        self._state = _State.REAUTH
        self._event(0x29, self.meter_ip)
        await asyncio.sleep(self.reauth_delay_s)
        if self._state is not _State.REAUTH:
            return
        if self._credentials_ok() and not self.meter.config.faults.silent:
            self.reauths += 1
            self._session_up()
        else:
            self._state = _State.IDLE
            self._event(0x24, self.meter_ip)

    def _skterm(self, args: list[str]) -> None:
        self._nargs(args, 0)
        if self._state not in (_State.JOINED, _State.REAUTH):
            raise _Fail("ER10")
        if self._session_task is not None:
            self._session_task.cancel()
            self._session_task = None
        self._state = _State.IDLE
        self._emit("OK")
        self._spawn(self._terminated(self.meter.config.faults.silent))

    async def _terminated(self, timed_out: bool) -> None:
        await asyncio.sleep(self.join_delay_s / 4)
        self._event(0x28 if timed_out else 0x27, self.meter_ip)

    def _sksendto(self, fields: list[str], payload: bytes) -> None:
        handle = _hex(fields[0], digits=1)
        destination = _ip(fields[1])
        port = _hex(fields[2], max_digits=4)
        sec = _hex(fields[3], digits=1)
        side = fields[4] if self.model.has_side else "0"
        if not 1 <= handle <= 6 or sec > 2 or side not in ("0", "1"):
            raise _Fail("ER06")
        if not 0 < len(payload) <= MAX_PAYLOAD:
            raise _Fail("ER06")
        to_meter = destination in (self.meter_ip, MULTICAST_ALL_NODES) and side == "0"
        if self._state is not _State.JOINED or self._arib_limited:
            param = "01"
        elif not to_meter:
            param = "02"
        else:
            param = "00"
        self._event(0x21, destination, param)
        self._emit("OK")
        if param != "00":
            self.frames_refused += 1
            return
        self.frames_sent += 1
        if self.faults.drop_rate and self._rng.random() < self.faults.drop_rate:
            self.frames_dropped += 1
            return
        if port == ECHONET_UDP_PORT and sec != 0:
            self._meter_receives(payload)

    def _rop(self, args: list[str]) -> None:
        self._nargs(args, 0)
        self._emit(f"OK {self.wopt:02X}")

    def _wopt(self, args: list[str]) -> None:
        self._nargs(args, 1)
        mode = _hex(args[0], digits=2)
        if mode > 1:
            raise _Fail("ER06")
        if self.wopt_limit is not None and self.option_writes >= self.wopt_limit:
            raise _Fail("ER10")  # the flash is worn out
        self.option_writes += 1
        self.wopt = mode
        self._emit("OK")

    def _sksave(self, args: list[str]) -> None:
        self._nargs(args, 0)
        self._saved = (dict(self.registers), self._rbid, self._pwd)
        self._emit("OK")

    def _skload(self, args: list[str]) -> None:
        self._nargs(args, 0)
        if self._saved is None:
            raise _Fail("ER10")
        registers, self._rbid, self._pwd = self._saved
        self.registers = dict(registers)
        self._emit("OK")

    def _skerase(self, args: list[str]) -> None:
        self._nargs(args, 0)
        self._saved = None
        self._emit("OK")

    def _accept(self, args: list[str]) -> None:
        """Commands a host may send that change nothing the simulation models."""
        self._emit("OK")

    _COMMANDS: ClassVar[dict[str, Callable[[DongleEmulator, list[str]], None]]] = {
        "SKVER": _skver,
        "SKAPPVER": _skappver,
        "SKINFO": _skinfo,
        "SKRESET": _skreset,
        "SKSREG": _sksreg,
        "SKSETRBID": _sksetrbid,
        "SKSETPWD": _sksetpwd,
        "SKLL64": _skll64,
        "SKSCAN": _skscan,
        "SKJOIN": _skjoin,
        "SKTERM": _skterm,
        "SKSENDTO": _accept,  # never reached: see _run_line
        "ROPT": _rop,
        "WOPT": _wopt,
        "SKSAVE": _sksave,
        "SKLOAD": _skload,
        "SKERASE": _skerase,
        "SKUDPPORT": _accept,
        "SKADDNBR": _accept,
    }

    # -- the meter behind the radio ------------------------------------------------------

    def _meter_receives(self, payload: bytes) -> None:
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
            if faults.drop_rate and self._rng.random() < faults.drop_rate:
                return
        answers = self._meter_answers(frame)
        copies = 2 if faults.duplicate_rate and self._rng.random() < faults.duplicate_rate else 1
        delay = self.answer_latency_s + faults.delay_s + self.faults.delay_s
        assert self._loop is not None
        for answer in answers:
            data = encode_frame(answer)
            for _ in range(copies):
                self._loop.call_later(delay, self._radio_to_host, data, self.dongle_ip)

    def _meter_answers(self, frame: Frame) -> list[Frame]:
        limit = self.meter.config.faults.max_epcs_per_get
        if frame.esv != ESV.GET or limit is None or len(frame.props) <= limit:
            return self.meter.node.handle(frame)
        answers = self.meter.node.handle(frame._replace(props=frame.props[:limit]))
        refused = tuple(Property(p.epc) for p in frame.props[limit:])
        return [a._replace(esv=ESV.GET_SNA, props=a.props + refused) for a in answers]

    def _radio_to_host(self, data: bytes, destination: ipaddress.IPv6Address) -> None:
        if self._state is not _State.JOINED or self._master is None:
            return  # no session to decrypt it with: lost
        if self.faults.drop_rate and self._rng.random() < self.faults.drop_rate:
            self.frames_dropped += 1
            return
        self.frames_received += 1
        self._erxudp(data, src=self.meter_ip, dst=destination)

    def _next_tid(self) -> int:
        self._tid = (self._tid + 1) & 0xFFFF
        return self._tid

    async def _announce_instances(self) -> None:
        await asyncio.sleep(self.answer_latency_s * 2)
        if not self.meter.config.faults.silent:
            frame = self.meter.node.instance_list_announcement(self._next_tid())
            self._radio_to_host(encode_frame(frame), MULTICAST_ALL_NODES)

    async def _announce_forever(self) -> None:
        clock = self.meter.clock
        while True:
            await clock.sleep_until(self.meter.next_announcement_time())
            if self._state is _State.JOINED and not self.meter.config.faults.silent:
                frame = self.meter.fixed_time_announcement(self._next_tid())
                self._radio_to_host(encode_frame(frame), MULTICAST_ALL_NODES)
            # Never twice for one half hour, even if the clock stands still.
            await clock.sleep_until(clock.now() + timedelta(seconds=1))

    # -- things the meter or the radio do to the dongle ----------------------------------

    def meter_ends_session(self) -> None:
        """The meter ends the PANA session (EVENT 26)."""
        if self._state in (_State.JOINED, _State.REAUTH):
            if self._session_task is not None:
                self._session_task.cancel()
                self._session_task = None
            self._state = _State.IDLE
            self._event(0x26, self.meter_ip)

    def arib_limit(self, active: bool) -> None:
        """The ARIB STD-T108 transmit-time limit is reached (EVENT 32) or released (33);
        while it holds, SKSENDTO answers EVENT 21 … 01."""
        if active != self._arib_limited:
            self._arib_limited = active
            self._event(0x32 if active else 0x33, self.dongle_ip)
