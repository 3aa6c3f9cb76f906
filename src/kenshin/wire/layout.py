"""Where each field of each message goes in its CBOR array, and back.

A payload is `[type, version, field, field, ...]`, the fields in the order of the
message's dataclass, never keyed by name (names would be most of the bytes); a readings
batch's samples go as columns (`columns.py`). Kept apart from the checks (`checks.py`),
which say what a valid message is, and from the envelope and versions (`versions.py`,
`codec.py`): this module only moves fields. A `from_wire` reads the fields it knows and
leaves the checking of their values to `checks`, except where it must look at a value to
go on (a column's length, a code's meaning).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .checks import (
    CURRENT_DA_MAX,
    CURRENT_DA_MIN,
    DECODING,
    DR_ACK_STATE_BY_CODE,
    DR_ACK_STATE_CODES,
    LINK_STATE_BY_CODE,
    LINK_STATE_CODES,
    MAX_FIXED_VALUES,
    MAX_INSTANT_SAMPLES,
    MAX_STEP_S,
    MAX_TIME_S,
    MIN_TIME_S,
    POWER_W_MAX,
    POWER_W_MIN,
    RAW_MAX,
    SLOT_S,
    SOURCE_BY_CODE,
    Check,
    bad,
    check_batch,
    check_command,
    check_dr_ack,
    check_dr_event,
    check_dr_report,
    check_dr_window,
    check_event,
    check_result,
    check_settings,
    check_status,
    is_int,
    kind,
)
from .columns import code_column, common_step, compress_times, delta_column, expand_times
from .messages import (
    Command,
    CommandResult,
    DrAck,
    DrDeviceReport,
    DrEvent,
    DrReport,
    DrSet,
    Event,
    FixedTimeValue,
    InstantSample,
    MeterScale,
    ReadingsBatch,
    Settings,
    Status,
    ValueSource,
)
from .versions import read_column


def _batch_to_wire(m: ReadingsBatch) -> list[Any]:
    instant = None
    if m.instant:
        times = [s.at_s for s in m.instant]
        step = common_step(times)
        instant = [
            times[0],
            step,
            compress_times(times, step),
            code_column([s.power_w for s in m.instant]),
            code_column([s.current_r_da for s in m.instant]),
            code_column([s.current_t_da for s in m.instant]),
        ]
    fixed = None
    if m.fixed:
        sources = [int(v.source) for v in m.fixed]
        fixed = [
            m.fixed[0].slot_start_s,
            compress_times([v.slot_start_s // SLOT_S for v in m.fixed], 1),
            delta_column([v.normal_raw for v in m.fixed]),
            delta_column([v.reverse_raw for v in m.fixed]),
            sources if any(sources) else None,
        ]
    scale = None
    if m.scale is not None:
        scale = [m.scale.coefficient, int(m.scale.unit_code), m.scale.digits]
    return [m.seq, m.meter, instant, fixed, scale]


def _batch_from_wire(f: list[Any], version: int) -> ReadingsBatch:
    seq, meter, instant, fixed, scale = f
    samples: tuple[InstantSample, ...] = ()
    if instant is not None:
        t0, step, deviations, power, r, t = leading_fields(instant, 6, "ReadingsBatch.instant")
        DECODING.time(t0, "ReadingsBatch.instant.t0_s")
        DECODING.int_in(step, 0, MAX_STEP_S, "ReadingsBatch.instant.step_s")
        times = expand_times(t0, step, deviations, MIN_TIME_S, MAX_TIME_S,
                              MAX_INSTANT_SAMPLES, "ReadingsBatch.instant.times")  # fmt: skip
        n = len(times)
        samples = tuple(map(InstantSample, times,
            read_column(power, n, POWER_W_MIN, POWER_W_MAX,
                            "ReadingsBatch.instant.power_w", version),
            read_column(r, n, CURRENT_DA_MIN, CURRENT_DA_MAX,
                            "ReadingsBatch.instant.current_r_da", version),
            read_column(t, n, CURRENT_DA_MIN, CURRENT_DA_MAX,
                            "ReadingsBatch.instant.current_t_da", version),
        ))  # fmt: skip
    values: tuple[FixedTimeValue, ...] = ()
    if fixed is not None:
        slot0, deviations, normal, reverse, source = leading_fields(fixed, 5, "ReadingsBatch.fixed")
        if DECODING.time(slot0, "ReadingsBatch.fixed.slot0_s") % SLOT_S:
            bad("not on a half hour (a multiple of 1800 s)", "ReadingsBatch.fixed.slot0_s")
        slots = expand_times(slot0 // SLOT_S, 1, deviations, -(-MIN_TIME_S // SLOT_S),
                              MAX_TIME_S // SLOT_S, MAX_FIXED_VALUES,
                              "ReadingsBatch.fixed.slots")  # fmt: skip
        n = len(slots)
        sources = [ValueSource.MEASURED] * n
        if source is not None:
            if type(source) is not list or len(source) != n:
                bad(f"expected {n} source codes or null", "ReadingsBatch.fixed.source")
            for i, code in enumerate(source):
                if type(code) is not int or code not in SOURCE_BY_CODE:
                    bad("not a source code (0 measured, 1 refilled)",
                         f"ReadingsBatch.fixed.source[{i}]")  # fmt: skip
                sources[i] = SOURCE_BY_CODE[code]
        values = tuple(map(FixedTimeValue, [u * SLOT_S for u in slots],
            read_column(normal, n, 0, RAW_MAX, "ReadingsBatch.fixed.normal_raw", version),
            read_column(reverse, n, 0, RAW_MAX, "ReadingsBatch.fixed.reverse_raw", version),
            sources,
        ))  # fmt: skip
    meter_scale = None
    if scale is not None:
        coefficient, unit_code, digits = leading_fields(scale, 3, "ReadingsBatch.scale")
        meter_scale = MeterScale(coefficient, unit_code, digits)
    return ReadingsBatch(seq, meter, samples, values, meter_scale)


def _status_to_wire(m: Status) -> list[Any]:
    return [m.at_s, str(m.agent_version), m.uptime_s, LINK_STATE_CODES[m.link], m.lqi,
            m.queue_depth, m.last_good_read_s, m.settings_version,
            _to_plain(m.errors)]  # fmt: skip


def _status_from_wire(f: list[Any], _wire_version: int) -> Status:
    at_s, version, uptime, link, lqi, depth, last_read, settings, errors = f
    state = LINK_STATE_BY_CODE.get(link) if type(link) is int else None
    if state is None:
        bad(f"not a link state code (0..{max(LINK_STATE_BY_CODE)})", "Status.link")
    return Status(at_s, version, uptime, state, lqi, depth, last_read, settings, errors)


def _event_to_wire(m: Event) -> list[Any]:
    return [str(m.code), m.at_s, _to_plain(m.detail)]


def _result_to_wire(m: CommandResult) -> list[Any]:
    return [m.id, m.ok, _to_plain(m.result), None if m.error is None else str(m.error)]


def _command_to_wire(m: Command) -> list[Any]:
    return [m.id, str(m.name), m.expires_s, _to_plain(m.args)]


def _settings_to_wire(m: Settings) -> list[Any]:
    return [m.version, m.issued_s, _to_plain(m.values)]


def _slot_column(m: DrEvent, pairs: tuple[tuple[int, int], ...]) -> list[int | None] | None:
    """Per-slot values as one entry a half hour from the window's start (null: none),
    through the last with a value: 1..5 bytes a slot, no times."""
    if not pairs:
        return None
    column: list[int | None] = [None] * ((pairs[-1][0] - m.start_s) // SLOT_S + 1)
    for slot, value in pairs:
        column[(slot - m.start_s) // SLOT_S] = int(value)
    return column


def _slot_pairs(column: Any, start_s: int, slots: int, where: str) -> tuple[tuple[int, Any], ...]:
    if column is None:
        return ()
    if type(column) is not list:
        bad(f"expected an array or null, got {kind(column)}", where)
    if len(column) > slots:
        bad(f"{len(column)} half hours, the window has {slots}", where)
    return tuple((start_s + i * SLOT_S, v) for i, v in enumerate(column) if v is not None)


def _dr_event_to_wire(m: DrEvent) -> list[Any]:
    return [m.event_id, m.start_s, m.end_s, _slot_column(m, m.targets), m.shed,
            _slot_column(m, m.price), m.opt_out_deadline_s, m.cancelled]  # fmt: skip


def _dr_event_from_wire(f: list[Any], _version: int) -> DrEvent:
    event_id, start, end, targets, shed, price, deadline, cancelled = f
    slots = check_dr_window(start, end, DECODING)  # the columns' times hang on the window
    return DrEvent(event_id, start, end, _slot_pairs(targets, start, slots, "DrEvent.targets"),
                   shed, _slot_pairs(price, start, slots, "DrEvent.price"), deadline,
                   cancelled)  # fmt: skip


def _dr_ack_to_wire(m: DrAck) -> list[Any]:
    reason = None if m.reason is None else str(m.reason)
    return [m.event_id, DR_ACK_STATE_CODES[m.state], m.devices, reason]


def _dr_ack_from_wire(f: list[Any], _version: int) -> DrAck:
    event_id, code, devices, reason = f
    state = DR_ACK_STATE_BY_CODE.get(code) if type(code) is int else None
    if state is None:
        bad(f"not a DrAck state code (0..{max(DR_ACK_STATE_BY_CODE)})", "DrAck.state")
    return DrAck(event_id, state, devices, reason)


def _dr_report_to_wire(m: DrReport) -> list[Any]:
    devices = [
        [d.eoj, [[s.epc, s.asked, s.accepted, s.read_back, s.restore] for s in d.sets],
         d.power_before_w, d.power_during_w, d.power_after_w]
        for d in m.devices
    ]  # fmt: skip
    return [m.event_id, devices, m.ok]


def _dr_report_from_wire(f: list[Any], _version: int) -> DrReport:
    event_id, devices, ok = f
    if type(devices) is not list:
        bad(f"expected an array, got {kind(devices)}", "DrReport.devices")
    reports = []
    for i, device in enumerate(devices):
        where = f"DrReport.devices[{i}]"
        eoj, sets, before, during, after = leading_fields(device, 5, where)
        if type(sets) is not list:
            bad(f"expected an array, got {kind(sets)}", f"{where}.sets")
        done = tuple(DrSet(*leading_fields(s, 5, f"{where}.sets[{j}]")) for j, s in enumerate(sets))
        reports.append(DrDeviceReport(eoj, done, before, during, after))
    return DrReport(event_id, tuple(reports), ok)


def _to_plain(value: Any) -> Any:
    """A checked JSON-like value as CBOR takes it: Mappings as dicts, tuples as lists,
    enum members as their plain values."""
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if type(value) is not bool and is_int(value) and type(value) is not int:
        return int(value)
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    return value


class Spec(NamedTuple):
    cls: type
    check: Callable[[Any, Check], None]
    to_wire: Callable[[Any], list[Any]]
    from_wire: Callable[[list[Any], int], Any]  # the fields, the payload's version
    field_count: int  # what this version reads; a newer peer may send more


SPECS: dict[int, Spec] = {
    ReadingsBatch.TYPE_CODE: Spec(ReadingsBatch, check_batch, _batch_to_wire, _batch_from_wire, 5),
    Status.TYPE_CODE: Spec(Status, check_status, _status_to_wire, _status_from_wire, 9),
    Event.TYPE_CODE: Spec(Event, check_event, _event_to_wire, lambda f, _: Event(*f), 3),
    CommandResult.TYPE_CODE: Spec(
        CommandResult, check_result, _result_to_wire, lambda f, _: CommandResult(*f), 4
    ),
    Command.TYPE_CODE: Spec(Command, check_command, _command_to_wire, lambda f, _: Command(*f), 4),
    Settings.TYPE_CODE: Spec(
        Settings, check_settings, _settings_to_wire, lambda f, _: Settings(*f), 3
    ),
    DrEvent.TYPE_CODE: Spec(DrEvent, check_dr_event, _dr_event_to_wire, _dr_event_from_wire, 8),
    DrAck.TYPE_CODE: Spec(DrAck, check_dr_ack, _dr_ack_to_wire, _dr_ack_from_wire, 4),
    DrReport.TYPE_CODE: Spec(
        DrReport, check_dr_report, _dr_report_to_wire, _dr_report_from_wire, 3
    ),
}
CODE_BY_CLASS = {spec.cls: code for code, spec in SPECS.items()}


def leading_fields(value: Any, count: int, where: str) -> list[Any]:
    """The first `count` fields of a fixed-layout array (later ones are a newer peer's)."""
    if type(value) is not list:
        bad(f"expected an array, got {kind(value)}", where)
    if len(value) < count:
        bad(f"{len(value)} fields, need {count}", where)
    return value[:count]
