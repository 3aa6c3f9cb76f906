"""The emulated dongle's commands: one function per SKSTACK command, over a `DongleCore`.

Separate from the core so that the core is the state and its clocks, and this is the
command reference in code: each handler checks its arguments (raising `Fail` for the
`FAIL ERxx` answer), changes the core's state, prints its answer, and schedules on the
core's timers what the real stack does later (scan results, join steps, EVENT 27). The
choices where vendors are silent are listed in the package doc.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from .defs import (
    APP_VERSIONS,
    CHANNELS,
    ECHONET_UDP_PORT,
    MAX_PAYLOAD,
    MULTICAST_ALL_NODES,
    VERSIONS,
    Fail,
    State,
    link_local,
    long_ip,
    nargs,
    parse_hex,
    parse_ip,
)

if TYPE_CHECKING:
    from .core import DongleCore


def run(core: DongleCore, name: str, args: list[str]) -> None:
    """Execute one command line (already echoed); `Fail` for its FAIL answer."""
    handler = COMMANDS.get(name)
    if handler is None or (name == "ROPT" and not core.has_ropt):
        raise Fail("ER04")
    if name == "SKSENDTO":  # a SKSENDTO line that ended before its data
        raise Fail("ER05")
    handler(core, args)


# -- identity and registers ------------------------------------------------------------------


def skver(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    core.emit(f"EVER {VERSIONS[core.model]}")
    core.emit("OK")


def skappver(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    core.emit(f"EAPPVER {APP_VERSIONS[core.model]}")
    core.emit("OK")


def skinfo(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    channel = int(core.registers["S2"], 16)
    pan = int(core.registers["S3"], 16)
    fields = [
        "EINFO",
        long_ip(core.dongle_ip),
        f"{core.dongle_mac:016X}",
        f"{channel:02X}",
        f"{pan:04X}",
        # The fifth field is the side (0 B-route, 1 HAN) on the BP35C series; the
        # BP35A1 has no sides and prints FFFE there. Hosts tell the dialects apart by it.
        "0" if core.model.has_side else "FFFE",
    ]
    core.emit(" ".join(fields))
    core.emit("OK")


def skreset(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    core.emit("OK")
    core.reset_stack()


def sksreg(core: DongleCore, args: list[str]) -> None:
    nargs(args, 1, 2)
    reg = args[0].upper()
    if not re.fullmatch(r"S[0-9A-F]{1,2}", reg):
        raise Fail("ER06")
    # SA2 (B-route side on dual-side firmware) is accepted by the BP35A1 too and does
    # nothing there: an open B-route library that runs on real BP35A1s sets it always.
    if reg == "SA2" and not core.sa2_supported:
        raise Fail("ER06")
    if len(args) == 1:
        core.emit(f"ESREG {core.registers.get(reg, '0')}")
        core.emit("OK")
        return
    value = args[1]
    if reg == "S1":
        raise Fail("ER06")  # the MAC address is read-only
    if reg == "S2":
        number = parse_hex(value, max_digits=2)
        if number not in CHANNELS:
            raise Fail("ER06")
        value = f"{number:02X}"
    elif reg == "S3":
        value = f"{parse_hex(value, max_digits=4):04X}"
    elif reg in ("SFE", "SA2"):
        if value not in ("0", "1"):
            raise Fail("ER06")
    else:
        value = f"{parse_hex(value, max_digits=32):X}"
    core.registers[reg] = value
    core.emit("OK")


def sksetrbid(core: DongleCore, args: list[str]) -> None:
    nargs(args, 1)
    if len(args[0]) != 32:
        raise Fail("ER06")
    core.rbid = args[0]
    core.emit("OK")


def sksetpwd(core: DongleCore, args: list[str]) -> None:
    nargs(args, 2)
    length = parse_hex(args[0], max_digits=2)
    if not 1 <= length <= 32 or len(args[1]) != length:
        raise Fail("ER06")
    core.pwd = args[1]
    core.emit("OK")


def skll64(core: DongleCore, args: list[str]) -> None:
    nargs(args, 1)
    mac = parse_hex(args[0], digits=16)
    core.emit(long_ip(link_local(mac)))  # no OK after this one


# -- scan ----------------------------------------------------------------------------------


def skscan(core: DongleCore, args: list[str]) -> None:
    nargs(args, 4 if core.model.has_side else 3)
    mode = parse_hex(args[0], max_digits=1)
    mask = parse_hex(args[1], digits=8)
    duration = parse_hex(args[2], max_digits=2)
    if mode not in (0, 2, 3) or duration > 14:
        raise Fail("ER06")
    if core.model.has_side and args[3] not in ("0", "1"):
        raise Fail("ER06")
    if core.scanning or core.stack is State.JOINING:
        raise Fail("ER10")
    core.scanning = True
    core.emit("OK")
    half = core.scan_seconds(duration) / 2
    side = args[3] if len(args) > 3 else "0"
    # Halfway the beacons are heard (or the energy measured), at the end the scan closes.
    if mode == 0:
        core.after(half, lambda: _energy_scan(core, mask, half))
    else:
        core.after(half, lambda: _active_scan(core, mode, mask, duration, side, half))


def _energy_scan(core: DongleCore, mask: int, rest: float) -> None:
    pairs = []
    for channel in CHANNELS:
        if mask >> (channel - 33) & 1:
            rssi = 0xC8 if channel == core.channel else core.rng.randrange(0x10, 0x30)
            pairs.append(f"{channel:02X} {rssi:02X}")

    def done() -> None:
        core.scanning = False
        core.emit("EEDSCAN")
        core.emit(" ".join(pairs))
        core.event(0x1F, core.dongle_ip)

    core.after(rest, done)


def _active_scan(
    core: DongleCore, mode: int, mask: int, duration: int, side: str, rest: float
) -> None:
    found = (
        duration >= core.scan_threshold
        and mask >> (core.channel - 33) & 1
        and side == "0"
        and not core.faults.hidden_from_scan
        and not core.meter.config.faults.silent
    )
    if found and core.faults.scan_misses > 0:
        core.faults.scan_misses -= 1
        found = False
    if found:
        core.event(0x20, core.meter_ip)
        core.emit("EPANDESC")
        core.emit(f"  Channel:{core.channel:02X}")
        core.emit("  Channel Page:09")
        core.emit(f"  Pan ID:{core.pan_id:04X}")
        core.emit(f"  Addr:{core.meter_mac:016X}")
        core.emit(f"  LQI:{core.lqi:02X}")
        if core.model.has_side:
            core.emit("  Side:0")
        if mode == 2:
            core.emit(f"  PairID:{core.pair_id}")

    def done() -> None:
        core.scanning = False
        core.event(0x22, core.dongle_ip)

    core.after(rest, done)


# -- join and leave ------------------------------------------------------------------------


def skjoin(core: DongleCore, args: list[str]) -> None:
    nargs(args, 1)
    target = parse_ip(args[0])
    if core.stack is not State.IDLE or core.scanning:
        raise Fail("ER10")
    core.join_attempts += 1
    channel_ok = int(core.registers["S2"], 16) == core.channel
    ok = (
        target == core.meter_ip
        and channel_ok
        and int(core.registers["S3"], 16) == core.pan_id
        and core.credentials_ok()
        and not core.meter.config.faults.silent
    )
    if core.faults.join_failures > 0:
        core.faults.join_failures -= 1
        ok = False
    reachable = target == core.meter_ip and channel_ok
    core.stack = State.JOINING
    core.emit("OK")
    # The steps are timed from now: EVENT 21 (02) and 02 after a quarter of the delay; two
    # PANA exchanges a quarter apart when the meter hears us; the verdict a quarter later
    # (half the delay in all when nobody answered).
    step = core.join_delay_s / 4
    at = step
    core.after(at, lambda: _join_begins(core, target, reachable))
    if reachable:
        for _ in range(2):
            at += step
            core.after(at, lambda: _pana_exchange(core, target))
    core.after(at + core.join_delay_s - 3 * step, lambda: _join_ends(core, target, ok))


def _join_begins(core: DongleCore, target: ipaddress.IPv6Address, reachable: bool) -> None:
    core.event(0x21, target, "02")
    if reachable:
        core.event(0x02, target)


def _pana_exchange(core: DongleCore, target: ipaddress.IPv6Address) -> None:
    if core.pana_noise:
        core.pana_frame()
    core.event(0x21, target, "00")


def _join_ends(core: DongleCore, target: ipaddress.IPv6Address, ok: bool) -> None:
    if ok:
        core.joins += 1
        core.session_up()
    else:
        core.stack = State.IDLE
        core.event(0x24, target)


def skterm(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    if core.stack not in (State.JOINED, State.REAUTH):
        raise Fail("ER10")
    core.end_session()
    core.emit("OK")
    timed_out = core.meter.config.faults.silent  # a silent meter never confirms
    core.after(
        core.join_delay_s / 4, lambda: core.event(0x28 if timed_out else 0x27, core.meter_ip)
    )


# -- send ----------------------------------------------------------------------------------


def sksendto(core: DongleCore, fields: list[str], payload: bytes) -> None:
    """SKSENDTO, its header's fields and its payload cut by the framer."""
    handle = parse_hex(fields[0], digits=1)
    destination = parse_ip(fields[1])
    port = parse_hex(fields[2], max_digits=4)
    sec = parse_hex(fields[3], digits=1)
    side = fields[4] if core.model.has_side else "0"
    if not 1 <= handle <= 6 or sec > 2 or side not in ("0", "1"):
        raise Fail("ER06")
    if not 0 < len(payload) <= MAX_PAYLOAD:
        raise Fail("ER06")
    to_meter = destination in (core.meter_ip, MULTICAST_ALL_NODES) and side == "0"
    if core.stack is not State.JOINED or core.arib_limited:
        param = "01"
    elif not to_meter:
        param = "02"
    else:
        param = "00"
    core.event(0x21, destination, param)
    core.emit("OK")
    if param != "00":
        core.frames_refused += 1
        return
    core.frames_sent += 1
    if core.faults.drop_rate and core.rng.random() < core.faults.drop_rate:
        core.frames_dropped += 1
        return
    if port == ECHONET_UDP_PORT and sec != 0:
        core.meter_receives(payload)


# -- flash ---------------------------------------------------------------------------------


def ropt(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    core.emit(f"OK {core.wopt:02X}")


def wopt(core: DongleCore, args: list[str]) -> None:
    nargs(args, 1)
    mode = parse_hex(args[0], digits=2)
    if mode > 1:
        raise Fail("ER06")
    if core.wopt_limit is not None and core.option_writes >= core.wopt_limit:
        raise Fail("ER10")  # the flash is worn out
    core.option_writes += 1
    core.wopt = mode
    core.emit("OK")


def sksave(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    core.saved = (dict(core.registers), core.rbid, core.pwd)
    core.emit("OK")


def skload(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    if core.saved is None:
        raise Fail("ER10")
    registers, core.rbid, core.pwd = core.saved
    core.registers = dict(registers)
    core.emit("OK")


def skerase(core: DongleCore, args: list[str]) -> None:
    nargs(args, 0)
    core.saved = None
    core.emit("OK")


def accept(core: DongleCore, args: list[str]) -> None:
    """Commands a host may send that change nothing the simulation models."""
    core.emit("OK")


COMMANDS: dict[str, Callable[[DongleCore, list[str]], None]] = {
    "SKVER": skver,
    "SKAPPVER": skappver,
    "SKINFO": skinfo,
    "SKRESET": skreset,
    "SKSREG": sksreg,
    "SKSETRBID": sksetrbid,
    "SKSETPWD": sksetpwd,
    "SKLL64": skll64,
    "SKSCAN": skscan,
    "SKJOIN": skjoin,
    "SKTERM": skterm,
    "SKSENDTO": accept,  # never reached through `run`: the framer cuts SKSENDTO
    "ROPT": ropt,
    "WOPT": wopt,
    "SKSAVE": sksave,
    "SKLOAD": skload,
    "SKERASE": skerase,
    "SKUDPPORT": accept,
    "SKADDNBR": accept,
}
