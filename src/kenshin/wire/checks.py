"""What a valid message is: the limits, the ranges, and the field checks of every message.

One set of checks serves both directions: `encode` runs them before writing (the error is
`WireEncodeError`) and `decode` after reading (`WireDecodeError`), so that nothing the
cloud accepts could not have been sent and the reverse. Kept apart from the layout
(`layout.py`) and the column coding (`columns.py`) because the limits are the protocol's
promises, listed in docs/wire.md ("Limits"), and read by the gateway too (`gateway/batches.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from .errors import WireDecodeError, WireEncodeError, WireError, WireLimitError
from .messages import (
    UNIT_MILLIWATT_HOURS,
    Command,
    CommandResult,
    DrAck,
    DrAckState,
    DrDeviceReport,
    DrEvent,
    DrReport,
    DrSet,
    Event,
    FixedTimeValue,
    InstantSample,
    LinkState,
    MeterScale,
    ReadingsBatch,
    Settings,
    Status,
    ValueSource,
)

# -- limits: a payload over any of them is refused whole, on either side -----------------

MAX_PAYLOAD_BYTES = 65_536
MAX_INSTANT_SAMPLES = 2_880  # two days at 60 s
MAX_FIXED_VALUES = 480  # ten days of half hours
MAX_NAME_LEN = 32  # meter ref, agent version, event code, command name
MAX_KEY_LEN = 64  # a key of a map, an error counter's name
MAX_TEXT_LEN = 1_024  # a text value in a map, a command's error
MAX_MAP_ITEMS = 256  # entries and list elements in one map, nested ones included
MAX_MAP_DEPTH = 4  # a map in a map in a map in a map
MAX_COUNTERS = 64  # error counters in a status
MAX_DR_SLOTS = 48  # half hours in a demand-response window: 24 h
MAX_DR_DEVICES = 16  # devices in a DrReport (and counted in a DrAck)
MAX_DR_SETS = 16  # Sets of one device in a DrReport, the restores included
MAX_EDT_BYTES = 64  # a Set's EDT asked or read back
MAX_REASON_LEN = 128  # DrAck.reason
# A batch within the count limits always fits the payload limit: at most 16 bytes a
# sample and 16 a 30-minute value, 2,880 × 16 + 480 × 16 = 53,760 bytes and headers.
# So does a DrReport: 16 devices × (32 + 16 Sets × (2 × 66 + 6)) = 35,840 bytes and headers.

# -- ranges ------------------------------------------------------------------------------

UINT_MAX = 2**63 - 1  # seq, ids, versions, counters: fit a signed 64-bit SQL column
MIN_TIME_S = 946_684_800  # 2000-01-01T00:00:00Z: a gateway clock before it is not set
MAX_TIME_S = 4_102_444_799  # 2099-12-31T23:59:59Z
SLOT_S = 1_800
MAX_STEP_S = 86_400
POWER_W_MIN, POWER_W_MAX = -(2**31), 2**31 - 1  # E7: 4 bytes signed
CURRENT_DA_MIN, CURRENT_DA_MAX = -(2**15), 2**15 - 1  # E8: 2 bytes signed a phase
RAW_MAX = 99_999_999  # a cumulative register has at most 8 digits
COEFFICIENT_MAX = 999_999
LQI_MAX = 255
REDUCE_W_MAX = 1_000_000  # a home's reduction asked in one half hour, W (dr.DrAction's bound)
PRICE_MAX = 1_000_000  # yen/kWh × 100: 10,000 yen/kWh, forty times JEPX's record
SHED_MAX = 3
EOJ_MAX = 0xFF_FF_FF
CBOR_MAX_DEPTH = 16  # deeper than any valid message

# Wire codes of the link states: append only, never renumber.
LINK_STATE_CODES: dict[LinkState, int] = {
    LinkState.CONNECTING: 0,
    LinkState.JOINED: 1,
    LinkState.REAUTHENTICATING: 2,
    LinkState.AUTH_FAILED: 3,
    LinkState.DEVICE_LOST: 4,
    LinkState.NO_METER: 5,
    LinkState.CLOSED: 6,
}
LINK_STATE_BY_CODE = {code: state for state, code in LINK_STATE_CODES.items()}
# Wire codes of a DrAck's state: append only, never renumber.
DR_ACK_STATE_CODES: dict[DrAckState, int] = {
    DrAckState.ACCEPTED: 0,
    DrAckState.NO_DEVICES: 1,
    DrAckState.REFUSED: 2,
    DrAckState.CANCELLED: 3,
}
DR_ACK_STATE_BY_CODE = {code: state for state, code in DR_ACK_STATE_CODES.items()}
SOURCE_BY_CODE = {int(s): s for s in ValueSource}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")

# -- checks shared by both directions ------------------------------------------------------


class Check:
    """Field checks; a failure raises `bad` (the decode or the encode error, by direction)
    or `WireLimitError`."""

    __slots__ = ("bad",)

    def __init__(self, bad: type[WireError]):
        self.bad = bad

    def fail(self, reason: str, where: str) -> NoReturn:
        raise self.bad(reason, where=where)

    def int_in(self, value: Any, lo: int, hi: int, where: str) -> int:
        if type(value) is not int and not is_int(value):
            self.fail(f"expected an integer, got {kind(value)}", where)
        if not lo <= value <= hi:
            self.fail(f"{show(value)} outside {lo}..{hi}", where)
        return value

    def uint(self, value: Any, where: str) -> int:
        return self.int_in(value, 0, UINT_MAX, where)

    def time(self, value: Any, where: str) -> int:
        if type(value) is not int and not is_int(value):
            self.fail(f"expected epoch seconds (an integer), got {kind(value)}", where)
        if not MIN_TIME_S <= value <= MAX_TIME_S:
            self.fail(f"time {show(value)} outside 2000-01-01..2099-12-31 (epoch s)", where)
        return value

    def optional(self, check: Callable[..., int], value: Any, *args: Any) -> int | None:
        return None if value is None else check(value, *args)

    def label(self, value: Any, where: str, max_len: int = MAX_NAME_LEN) -> str:
        """Short printable text: a meter ref, a version, a counter's name, a map key."""
        if not isinstance(value, str):
            self.fail(f"expected text, got {kind(value)}", where)
        if len(value) > max_len:
            raise WireLimitError(f"text of {len(value)} characters, at most {max_len}", where=where)
        if not value or not value.isprintable():
            self.fail(f"need 1..{max_len} printable characters", where)
        return value

    def name(self, value: Any, where: str) -> str:
        """An identifier: an event code, a command name."""
        self.label(value, where)
        if not _NAME_CHARS.issuperset(value):
            self.fail(f"need 1..{MAX_NAME_LEN} of [A-Za-z0-9_.:-]", where)
        return value

    def text(self, value: Any, where: str) -> str:
        """Free text: may hold anything Unicode, newlines included."""
        if not isinstance(value, str):
            self.fail(f"expected text, got {kind(value)}", where)
        if len(value) > MAX_TEXT_LEN:
            raise WireLimitError(
                f"text of {len(value)} characters, at most {MAX_TEXT_LEN}", where=where
            )
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate: not representable in CBOR text
            self.fail("text is not valid Unicode", where)
        return value

    def flag(self, value: Any, where: str) -> bool:
        if type(value) is not bool:
            self.fail(f"expected a boolean, got {kind(value)}", where)
        return value

    def octets(self, value: Any, where: str, max_len: int = MAX_EDT_BYTES) -> bytes:
        """A byte string of 1..max_len bytes (an EDT)."""
        if type(value) is not bytes:
            self.fail(f"expected a byte string, got {kind(value)}", where)
        if len(value) > max_len:
            raise WireLimitError(f"{len(value)} bytes, at most {max_len}", where=where)
        if not value:
            self.fail(f"need 1..{max_len} bytes", where)
        return value

    def sequence(self, value: Any, limit: int, what: str, where: str) -> list | tuple:
        if not isinstance(value, list | tuple):
            self.fail(f"expected a sequence of {what}, got {kind(value)}", where)
        if len(value) > limit:
            raise WireLimitError(f"{len(value)} {what}, at most {limit}", where=where)
        return value

    def value_map(self, value: Any, where: str) -> None:
        """A JSON-like map, within the size and depth limits."""
        budget = [MAX_MAP_ITEMS]
        self._map(value, where, budget, 1)

    def _map(self, value: Any, where: str, budget: list[int], depth: int) -> None:
        if not isinstance(value, Mapping):
            self.fail(f"expected a map, got {kind(value)}", where)
        self._spend(budget, len(value), where)
        for key, item in value.items():
            self.label(key, f"{where} key", MAX_KEY_LEN)
            self._value(item, f"{where}[{key!r}]", budget, depth)

    def _value(self, value: Any, where: str, budget: list[int], depth: int) -> None:
        if value is None or type(value) is bool:
            pass
        elif is_int(value):
            if not -(2**63) <= value <= UINT_MAX:
                self.fail(f"{show(value)} outside the 64-bit signed range", where)
        elif type(value) is float:
            if not math.isfinite(value):
                self.fail("a number must be finite", where)
        elif isinstance(value, str):
            self.text(value, where)
        elif isinstance(value, Mapping | list | tuple):
            if depth >= MAX_MAP_DEPTH:
                raise WireLimitError(
                    f"maps and lists nested deeper than {MAX_MAP_DEPTH}", where=where
                )
            if isinstance(value, Mapping):
                self._map(value, where, budget, depth + 1)
            else:
                self._spend(budget, len(value), where)
                for i, item in enumerate(value):
                    self._value(item, f"{where}[{i}]", budget, depth + 1)
        else:
            self.fail(f"{kind(value)} is not a map value (null, bool, number, text, list, map)",
                      where)  # fmt: skip

    def _spend(self, budget: list[int], count: int, where: str) -> None:
        budget[0] -= count
        if budget[0] < 0:
            raise WireLimitError(f"more than {MAX_MAP_ITEMS} items in one map", where=where)


ENCODING = Check(WireEncodeError)
DECODING = Check(WireDecodeError)


def is_int(value: Any) -> bool:
    """An int or an int subclass (an IntEnum member), never a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


KIND_NAMES = {
    type(None): "null", bool: "a boolean", int: "an integer", float: "a float",
    str: "text", bytes: "a byte string", list: "an array", tuple: "an array", dict: "a map",
}  # fmt: skip


def kind(value: Any) -> str:
    """What a value is, in CBOR's words (for errors: never the value itself)."""
    return KIND_NAMES.get(type(value)) or type(value).__name__


def show(number: int) -> str:
    """An integer for an error message (a huge one stays short and printable)."""
    if -(10**24) < number < 10**24:
        return str(number)
    return f"an integer of {number.bit_length()} bits"


# -- checking a message, before encoding and after decoding --------------------------------


def _in(values: list[Any], lo: int, hi: int) -> bool:
    """All plain ints (not bools, not other numbers) within lo..hi."""
    if not values:
        return True
    return set(map(type, values)) == {int} and lo <= min(values) and max(values) <= hi


def _instant_plainly_valid(instant: Sequence[Any]) -> bool:
    """Whether every sample is an InstantSample of plain in-range integers, checked column
    by column with built-ins: the ingest checks every sample it decodes, and the sample by
    sample walk (which says exactly where a value is wrong) costs ten times as much. False
    sends the caller on that walk."""
    if set(map(type, instant)) - {InstantSample}:
        return False
    present = [v for s in instant for v in (s.current_r_da, s.current_t_da) if v is not None]
    return (
        _in([s.at_s for s in instant], MIN_TIME_S, MAX_TIME_S)
        and _in([s.power_w for s in instant if s.power_w is not None], POWER_W_MIN, POWER_W_MAX)
        and _in(present, CURRENT_DA_MIN, CURRENT_DA_MAX)
    )


def check_batch(m: ReadingsBatch, c: Check) -> None:
    c.uint(m.seq, "ReadingsBatch.seq")
    c.label(m.meter, "ReadingsBatch.meter")
    instant = c.sequence(m.instant, MAX_INSTANT_SAMPLES, "samples", "ReadingsBatch.instant")
    for i, s in enumerate(() if _instant_plainly_valid(instant) else instant):
        if type(s) is not InstantSample:
            c.fail(f"expected an InstantSample, got {kind(s)}", f"ReadingsBatch.instant[{i}]")
        c.time(s.at_s, f"ReadingsBatch.instant[{i}].at_s")
        for name, value, lo, hi in (
            ("power_w", s.power_w, POWER_W_MIN, POWER_W_MAX),
            ("current_r_da", s.current_r_da, CURRENT_DA_MIN, CURRENT_DA_MAX),
            ("current_t_da", s.current_t_da, CURRENT_DA_MIN, CURRENT_DA_MAX),
        ):
            if value is not None:
                c.int_in(value, lo, hi, f"ReadingsBatch.instant[{i}].{name}")
    fixed = c.sequence(m.fixed, MAX_FIXED_VALUES, "30-minute values", "ReadingsBatch.fixed")
    for i, v in enumerate(fixed):
        where = f"ReadingsBatch.fixed[{i}]"
        if type(v) is not FixedTimeValue:
            c.fail(f"expected a FixedTimeValue, got {kind(v)}", where)
        if c.time(v.slot_start_s, f"{where}.slot_start_s") % SLOT_S:
            c.fail("not on a half hour (a multiple of 1800 s)", f"{where}.slot_start_s")
        c.optional(c.int_in, v.normal_raw, 0, RAW_MAX, f"{where}.normal_raw")
        c.optional(c.int_in, v.reverse_raw, 0, RAW_MAX, f"{where}.reverse_raw")
        if not is_int(v.source) or v.source not in SOURCE_BY_CODE:
            c.fail("expected a ValueSource (0 measured, 1 refilled)", f"{where}.source")
    scale = m.scale
    if scale is None:
        if fixed:
            c.fail("30-minute values need the meter's scale", "ReadingsBatch.scale")
        return
    if type(scale) is not MeterScale:
        c.fail(f"expected a MeterScale, got {kind(scale)}", "ReadingsBatch.scale")
    c.int_in(scale.coefficient, 1, COEFFICIENT_MAX, "ReadingsBatch.scale.coefficient")
    if not is_int(scale.unit_code) or scale.unit_code not in UNIT_MILLIWATT_HOURS:
        c.fail("not an E1 unit code (0x00..0x04, 0x0A..0x0D)", "ReadingsBatch.scale.unit_code")
    c.int_in(scale.digits, 1, 8, "ReadingsBatch.scale.digits")


def check_status(m: Status, c: Check) -> None:
    c.time(m.at_s, "Status.at_s")
    c.label(m.agent_version, "Status.agent_version")
    c.uint(m.uptime_s, "Status.uptime_s")
    if not isinstance(m.link, str) or m.link not in LINK_STATE_CODES:
        c.fail(f"not a LinkState, got {kind(m.link)}", "Status.link")
    c.optional(c.int_in, m.lqi, 0, LQI_MAX, "Status.lqi")
    c.uint(m.queue_depth, "Status.queue_depth")
    c.optional(c.time, m.last_good_read_s, "Status.last_good_read_s")
    c.optional(c.uint, m.settings_version, "Status.settings_version")
    if not isinstance(m.errors, Mapping):
        c.fail(f"expected a map, got {kind(m.errors)}", "Status.errors")
    if len(m.errors) > MAX_COUNTERS:
        raise WireLimitError(
            f"{len(m.errors)} counters, at most {MAX_COUNTERS}", where="Status.errors"
        )
    for key, count in m.errors.items():
        c.label(key, "Status.errors key", MAX_KEY_LEN)
        c.uint(count, f"Status.errors[{key!r}]")


def check_event(m: Event, c: Check) -> None:
    c.name(m.code, "Event.code")
    c.time(m.at_s, "Event.at_s")
    c.value_map(m.detail, "Event.detail")


def check_result(m: CommandResult, c: Check) -> None:
    c.uint(m.id, "CommandResult.id")
    if type(m.ok) is not bool:
        c.fail(f"expected a boolean, got {kind(m.ok)}", "CommandResult.ok")
    c.value_map(m.result, "CommandResult.result")
    if m.ok:
        if m.error is not None:
            c.fail("a successful result carries no error", "CommandResult.error")
    elif m.error is None or not c.text(m.error, "CommandResult.error"):
        c.fail("a failed result says why (1.. characters)", "CommandResult.error")


def check_command(m: Command, c: Check) -> None:
    c.uint(m.id, "Command.id")
    c.name(m.name, "Command.name")
    c.time(m.expires_s, "Command.expires_s")
    c.value_map(m.args, "Command.args")


def check_settings(m: Settings, c: Check) -> None:
    c.uint(m.version, "Settings.version")
    c.time(m.issued_s, "Settings.issued_s")
    c.value_map(m.values, "Settings.values")


def check_dr_window(start_s: Any, end_s: Any, c: Check) -> int:
    """The number of half hours in [start_s, end_s), each end on a half hour, 1..48."""
    for name, value in (("start_s", start_s), ("end_s", end_s)):
        if c.time(value, f"DrEvent.{name}") % SLOT_S:
            c.fail("not on a half hour (a multiple of 1800 s)", f"DrEvent.{name}")
    slots = (end_s - start_s) // SLOT_S
    if not 1 <= slots <= MAX_DR_SLOTS:
        c.fail(f"the window must end after it starts, within {MAX_DR_SLOTS} half hours",
               "DrEvent.end_s")  # fmt: skip
    return slots


def _slot_values(m: DrEvent, name: str, lo: int, hi: int, c: Check) -> None:
    where = f"DrEvent.{name}"
    previous = m.start_s - SLOT_S
    for i, pair in enumerate(c.sequence(getattr(m, name), MAX_DR_SLOTS, "half hours", where)):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            c.fail("expected a pair (slot_start_s, value)", f"{where}[{i}]")
        slot, value = pair
        c.int_in(slot, previous + SLOT_S, m.end_s - SLOT_S, f"{where}[{i}].slot_start_s")
        if (slot - m.start_s) % SLOT_S:
            c.fail("not on a half hour of the window", f"{where}[{i}].slot_start_s")
        c.int_in(value, lo, hi, f"{where}[{i}].value")
        previous = slot


def check_dr_event(m: DrEvent, c: Check) -> None:
    c.uint(m.event_id, "DrEvent.event_id")
    check_dr_window(m.start_s, m.end_s, c)
    _slot_values(m, "targets", 1, REDUCE_W_MAX, c)
    c.optional(c.int_in, m.shed, 1, SHED_MAX, "DrEvent.shed")
    _slot_values(m, "price", 0, PRICE_MAX, c)
    deadline = c.optional(c.time, m.opt_out_deadline_s, "DrEvent.opt_out_deadline_s")
    if deadline is not None and deadline > m.end_s:
        c.fail("after the window's end", "DrEvent.opt_out_deadline_s")
    c.flag(m.cancelled, "DrEvent.cancelled")
    if m.targets and m.shed is not None:
        c.fail("targets or a shed level, not both", "DrEvent.shed")
    if not (m.targets or m.shed is not None or m.cancelled):
        c.fail("an event asks for targets or a shed level", "DrEvent.targets")


def check_dr_ack(m: DrAck, c: Check) -> None:
    c.uint(m.event_id, "DrAck.event_id")
    if not isinstance(m.state, str) or m.state not in DR_ACK_STATE_CODES:
        c.fail(f"not a DrAckState, got {kind(m.state)}", "DrAck.state")
    c.int_in(m.devices, 0, MAX_DR_DEVICES, "DrAck.devices")
    if (m.state == DrAckState.ACCEPTED and not m.devices) or (
        m.state == DrAckState.NO_DEVICES and m.devices
    ):
        c.fail("accepted acts on 1 or more devices, no_devices on none", "DrAck.devices")
    c.optional(c.label, m.reason, "DrAck.reason", MAX_REASON_LEN)


def check_dr_report(m: DrReport, c: Check) -> None:
    c.uint(m.event_id, "DrReport.event_id")
    devices = c.sequence(m.devices, MAX_DR_DEVICES, "devices", "DrReport.devices")
    for i, d in enumerate(devices):
        where = f"DrReport.devices[{i}]"
        if type(d) is not DrDeviceReport:
            c.fail(f"expected a DrDeviceReport, got {kind(d)}", where)
        c.int_in(d.eoj, 0, EOJ_MAX, f"{where}.eoj")
        for j, s in enumerate(c.sequence(d.sets, MAX_DR_SETS, "Sets", f"{where}.sets")):
            at = f"{where}.sets[{j}]"
            if type(s) is not DrSet:
                c.fail(f"expected a DrSet, got {kind(s)}", at)
            c.int_in(s.epc, 0x80, 0xFF, f"{at}.epc")
            c.octets(s.asked, f"{at}.asked")
            c.flag(s.accepted, f"{at}.accepted")
            c.optional(c.octets, s.read_back, f"{at}.read_back")
            c.flag(s.restore, f"{at}.restore")
        for name in ("power_before_w", "power_during_w", "power_after_w"):
            c.optional(c.int_in, getattr(d, name), POWER_W_MIN, POWER_W_MAX, f"{where}.{name}")
    c.flag(m.ok, "DrReport.ok")


def bad(reason: str, where: str) -> NoReturn:
    """A decoding fault: what is wrong and where."""
    raise WireDecodeError(reason, where=where)
