"""The messages of the gateway↔cloud protocol: small frozen dataclasses, no I/O.

Constructing a message checks nothing; `kenshin.wire.encode` checks every field (types,
ranges, limits) before a byte is written, and `decode` checks the same on the way in, so
a message that crossed the wire is always valid. Fields are what the field calls them,
units in the name: `power_w`, `current_r_da` (deci-amperes), `at_s` (epoch seconds, UTC).

Maps (`args`, `detail`, `values`, `result`) hold JSON-like values: None, bool, int,
float, str, lists and maps with text keys. Messages are frozen, but such a map is an
ordinary dict: treat it as read-only. Arrays in a map come back from `decode` as lists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, ClassVar

from .topics import Kind

# -- readings ------------------------------------------------------------------------------


class ValueSource(IntEnum):
    """Where a 30-minute value came from (the gateway queue's `source` column)."""

    MEASURED = 0  # read (or announced) at its half hour: EA/EB
    REFILLED = 1  # refilled later from the meter's own history: E2/E4 or EC


# E1 codes → milliwatt-hours per count, exact integers (the smallest unit is 0.1 Wh).
UNIT_MILLIWATT_HOURS: dict[int, int] = {
    0x00: 1_000_000, 0x01: 100_000, 0x02: 10_000, 0x03: 1_000, 0x04: 100,
    0x0A: 10_000_000, 0x0B: 100_000_000, 0x0C: 1_000_000_000, 0x0D: 10_000_000_000,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class MeterScale:
    """What turns a raw register count into energy, exactly: coefficient (D3, 1 when
    the meter has none), unit code (E1) and effective digits (D7)."""

    coefficient: int = 1
    unit_code: int = 0x01
    digits: int = 6

    @property
    def milliwatt_hours_per_count(self) -> int:
        return UNIT_MILLIWATT_HOURS[self.unit_code] * self.coefficient

    @property
    def modulus(self) -> int:
        """The register wraps to 0 here."""
        return 10**self.digits

    def milliwatt_hours(self, raw: int) -> int:
        return raw * self.milliwatt_hours_per_count

    def delta_milliwatt_hours(self, old_raw: int, new_raw: int) -> int:
        """Energy between two register values, across at most one wrap."""
        return (new_raw - old_raw) % self.modulus * self.milliwatt_hours_per_count


@dataclass(frozen=True, slots=True)
class InstantSample:
    """One instant read: E7 power and E8 currents, stamped with the gateway's clock.
    None where the meter had no value; `current_t_da` is None on 2-wire service."""

    at_s: int
    power_w: int | None
    current_r_da: int | None = None
    current_t_da: int | None = None


@dataclass(frozen=True, slots=True)
class FixedTimeValue:
    """The registers at one JST half-hour boundary, as raw counts (exact; the server
    converts with the batch's `MeterScale`). `slot_start_s` is that boundary in epoch
    seconds, a multiple of 1800, by the meter's own clock. None: no value in this batch
    (the meter had none, or does not measure reverse flow)."""

    slot_start_s: int
    normal_raw: int | None
    reverse_raw: int | None = None
    source: ValueSource = ValueSource.MEASURED


@dataclass(frozen=True, slots=True)
class ReadingsBatch:
    """Readings of one meter, on `k/<gw>/d`. The gateway id is the topic's, never repeated.

    `seq` counts a gateway's batches (0, 1, 2, ... surviving restarts): the ingest uses
    it to spot a redelivered batch, and writes are idempotent besides. `scale` travels
    in every batch that carries 30-minute values (4 bytes: cheaper than any reference to
    it), so each batch converts to Wh on its own, even across a meter swap."""

    TYPE_CODE: ClassVar[int] = 1
    KIND: ClassVar[Kind] = Kind.READINGS

    seq: int
    meter: str
    instant: tuple[InstantSample, ...] = ()
    fixed: tuple[FixedTimeValue, ...] = ()
    scale: MeterScale | None = None


# -- status and events ---------------------------------------------------------------------


class LinkState(StrEnum):
    """The gateway's link to its meter."""

    CONNECTING = "connecting"
    JOINED = "joined"
    REAUTHENTICATING = "reauthenticating"
    AUTH_FAILED = "auth_failed"
    DEVICE_LOST = "device_lost"
    NO_METER = "no_meter"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Status:
    """The heartbeat, on `k/<gw>/s`. `at_s` is the gateway's clock when sent (the server
    compares it with its own to spot a drifting clock); `settings_version` is the version
    of the settings in force (None before any arrived); `errors` are running counters."""

    TYPE_CODE: ClassVar[int] = 2
    KIND: ClassVar[Kind] = Kind.STATUS

    at_s: int
    agent_version: str
    uptime_s: int
    link: LinkState
    lqi: int | None = None  # Wi-SUN link quality 0..255; None on an IP link
    queue_depth: int = 0  # readings waiting in the durable queue
    last_good_read_s: int | None = None
    settings_version: int | None = None
    errors: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, repr=False)
class Event:
    """Something that happened, on `k/<gw>/e`: `code` is short (e.g. "meter_swapped")."""

    TYPE_CODE: ClassVar[int] = 3
    KIND: ClassVar[Kind] = Kind.EVENT

    code: str
    at_s: int
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return _masked_repr(self)


# -- commands and settings -----------------------------------------------------------------


class CommandName(StrEnum):
    """The commands a gateway knows. `decode` lets other well-formed names through, so
    a gateway can answer an unknown command with a failed `CommandResult` rather than
    drop it and leave the server waiting."""

    READ_PROPERTY = "read_property"
    REALTIME = "realtime"
    BACKFILL = "backfill"
    REJOIN = "rejoin"
    RESTART = "restart"
    APPLY_SETTINGS = "apply_settings"
    UPDATE = "update"  # install a signed release: kenshin.updates.states has its contract


@dataclass(frozen=True, slots=True, repr=False)
class Command:
    """A request to one gateway, on `k/<gw>/c`; void after `expires_s` (a gateway that
    was offline must not act on a stale `restart`)."""

    TYPE_CODE: ClassVar[int] = 5
    KIND: ClassVar[Kind] = Kind.COMMAND

    id: int
    name: str
    expires_s: int
    args: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return _masked_repr(self)


@dataclass(frozen=True, slots=True, repr=False)
class CommandResult:
    """The answer to `Command` `id`, on `k/<gw>/r`. `ok` is True exactly when `error` is
    None; `result` may carry details either way."""

    TYPE_CODE: ClassVar[int] = 4
    KIND: ClassVar[Kind] = Kind.RESULT

    id: int
    ok: bool
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __repr__(self) -> str:
        return _masked_repr(self)


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """A gateway's whole configuration, retained on `k/<gw>/g`: poll intervals, realtime,
    uplink batch policy, meter link, B-route credentials — those only sealed to the
    running gateway's key (`kenshin.wire.sealing`), since the broker keeps what is
    retained. It travels only cloud → device, and its repr masks every secret."""

    TYPE_CODE: ClassVar[int] = 6
    KIND: ClassVar[Kind] = Kind.SETTINGS

    version: int
    issued_s: int
    values: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return _masked_repr(self)


# -- demand response -----------------------------------------------------------------------
#
# No topic of their own: the broker ACLs of every deployment (Mosquitto's acl_file, its
# dynamic security roles, RabbitMQ's topic checks) name the six letters, and a gateway
# subscribes to two topics only. A DrEvent comes on the command topic, its answers go on
# the result topic; a peer that does not know them refuses the type (docs/wire.md).

SlotValue = tuple[int, int]  # (slot_start_s, value): a JST half hour's value


class DrAckState(StrEnum):
    """What a gateway makes of a `DrEvent`."""

    ACCEPTED = "accepted"  # it will act on `devices` devices at the start
    NO_DEVICES = "no_devices"  # nothing on its LAN that the event and the policy may use
    REFUSED = "refused"  # not acted on: the reason says why (a bad policy, a past window)
    CANCELLED = "cancelled"  # the cancel of an event: restored, or never started


@dataclass(frozen=True, slots=True)
class DrEvent:
    """A demand-response event for one home, on `k/<gw>/c`. The window [`start_s`,
    `end_s`) is on JST half hours, at most 24 h; the event asks either a reduction per
    half hour (`targets`: (slot_start_s, reduce_w), slots of the window) or a `shed`
    level 1..3 (dr.py's order: 1 battery and water heater, 2 and the EV, 3 and the air
    conditioner). `price` (yen/kWh × 100 per slot) is for the home's display, not the
    plan. `cancelled`: the event `event_id` is called off; the gateway restores at once."""

    TYPE_CODE: ClassVar[int] = 7
    KIND: ClassVar[Kind] = Kind.COMMAND

    event_id: int
    start_s: int
    end_s: int
    targets: tuple[SlotValue, ...] = ()
    shed: int | None = None
    price: tuple[SlotValue, ...] = ()
    opt_out_deadline_s: int | None = None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class DrAck:
    """The gateway's answer to a `DrEvent`, at once, on `k/<gw>/r`."""

    TYPE_CODE: ClassVar[int] = 8
    KIND: ClassVar[Kind] = Kind.RESULT

    event_id: int
    state: DrAckState
    devices: int = 0  # the devices it will act on (their state at the start decides how)
    reason: str | None = None  # short, printable


@dataclass(frozen=True, slots=True)
class DrSet:
    """One ECHONET Lite SetC of an event as it went: the EDT asked, whether the device took
    it, and the EDT a Get read back afterwards (None: no answer). `restore`: a Set that
    undid an earlier one. Confirmed is derived, so it cannot disagree with the bytes."""

    epc: int
    asked: bytes
    accepted: bool
    read_back: bytes | None = None
    restore: bool = False

    @property
    def confirmed(self) -> bool:
        return self.accepted and self.read_back == self.asked


@dataclass(frozen=True, slots=True)
class DrDeviceReport:
    """One device of an event: its EOJ (class group, class, instance as one integer,
    0x027D01 a battery), its Sets, and its power (W, + drawn) read before the Sets, after
    them, and after the restore; None where it did not tell."""

    eoj: int
    sets: tuple[DrSet, ...] = ()
    power_before_w: int | None = None
    power_during_w: int | None = None
    power_after_w: int | None = None


@dataclass(frozen=True, slots=True)
class DrReport:
    """What a gateway did for an event, after its end and the restore, on `k/<gw>/r`.
    `ok`: every Set of every device confirmed, and the event ran to its end or cancel."""

    TYPE_CODE: ClassVar[int] = 9
    KIND: ClassVar[Kind] = Kind.RESULT

    event_id: int
    devices: tuple[DrDeviceReport, ...]
    ok: bool


Message = (
    ReadingsBatch | Status | Event | CommandResult | Command | Settings | DrEvent | DrAck | DrReport
)
MESSAGE_TYPES: tuple[type[Message], ...] = (
    ReadingsBatch, Status, Event, CommandResult, Command, Settings, DrEvent, DrAck, DrReport,
)  # fmt: skip
# What each topic carries: its first type, then the later ones (a topic's type set grows).
MESSAGES_FOR_KIND: dict[Kind, tuple[type[Message], ...]] = {
    kind: tuple(m for m in MESSAGE_TYPES if m.KIND is kind) for kind in Kind
}
MESSAGE_FOR_KIND: dict[Kind, type[Message]] = {k: ms[0] for k, ms in MESSAGES_FOR_KIND.items()}


# -- secrets -------------------------------------------------------------------------------

SECRET_KEY_MARKERS = ("password", "broute_id")
MASK = "***"


def is_secret_key(key: object) -> bool:
    """A map key whose value must never be shown: any containing "password" or
    "broute_id", in any case."""
    return isinstance(key, str) and any(m in key.lower() for m in SECRET_KEY_MARKERS)


def mask_secrets(value: Any, *, _depth: int = 0) -> Any:
    """A copy of a JSON-like value with every secret key's value replaced by "***"."""
    if _depth > 32:  # deeper than any valid message: stop rather than recurse forever
        return MASK
    if isinstance(value, Mapping):
        return {
            k: MASK if is_secret_key(k) else mask_secrets(v, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_secrets(v, _depth=_depth + 1) for v in value]
    return value


def _masked_repr(message: Any) -> str:
    parts = []
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, Mapping):
            value = mask_secrets(value)
        parts.append(f"{f.name}={value!r}")
    return f"{type(message).__name__}({', '.join(parts)})"
