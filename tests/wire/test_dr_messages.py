"""The demand-response messages: DrEvent (cloud → gateway on `k/<gw>/c`), DrAck and DrReport
(gateway → cloud on `k/<gw>/r`): round trips, every field's bounds refused both ways
(encoding our message, decoding a peer's), the topics that carry them, and fuzzed DR
payloads giving nothing but WireError."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenshin.wire import (
    MAX_DR_DEVICES,
    MAX_DR_SETS,
    MAX_EDT_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_REASON_LEN,
    MAX_TIME_S,
    WIRE_VERSION,
    Command,
    CommandResult,
    DrAck,
    DrAckState,
    DrDeviceReport,
    DrEvent,
    DrReport,
    DrSet,
    Settings,
    WireDecodeError,
    WireEncodeError,
    WireError,
    WireLimitError,
    decode,
    decode_publish,
    encode,
    encode_publish,
)
from kenshin.wire.checks import EOJ_MAX, PRICE_MAX, REDUCE_W_MAX
from kenshin.wire.codec import POWER_W_MAX, POWER_W_MIN
from kenshin.wire.layout import CODE_BY_CLASS, SPECS

from .dr_strategies import dr_acks, dr_events, dr_messages, dr_reports
from .test_codec_fuzz import check, mutate
from .test_messages import round_trip

S = 1_785_744_000  # 2026-08-03T17:00:00+09:00
H = 1_800  # a half hour


@settings(max_examples=300, deadline=None)
@given(dr_events())
def test_dr_event_round_trip(event: DrEvent) -> None:
    round_trip(event)


@settings(max_examples=200, deadline=None)
@given(dr_acks())
def test_dr_ack_round_trip(ack: DrAck) -> None:
    round_trip(ack)


@settings(max_examples=200, deadline=None)
@given(dr_reports)
def test_dr_report_round_trip(report: DrReport) -> None:
    round_trip(report)


def test_slot_values_travel_as_one_column_from_the_start() -> None:
    event = DrEvent(7, S, S + 4 * H, ((S, 1500), (S + 2 * H, 900)), price=((S + H, 4200),))
    body = cbor2.loads(encode(event))
    assert body == [7, WIRE_VERSION, 7, S, S + 4 * H, [1500, None, 900], None, [None, 4200],
                    None, False]  # fmt: skip
    assert decode(encode(event)) == event


def test_a_cancel_needs_no_target_and_confirmed_is_derived() -> None:
    cancel = DrEvent(7, S, S + 4 * H, cancelled=True)
    assert decode(encode(cancel)) == cancel
    assert DrSet(0xDA, b"\x43", True, b"\x43").confirmed
    assert not DrSet(0xDA, b"\x43", True, b"\x42").confirmed
    assert not DrSet(0xDA, b"\x43", False, b"\x43").confirmed
    assert not DrSet(0xDA, b"\x43", True, None).confirmed


def test_topics_carry_the_dr_messages_beside_their_first_type() -> None:
    event, ack = DrEvent(1, S, S + H, shed=2), DrAck(1, DrAckState.ACCEPTED, 3)
    report = DrReport(1, (DrDeviceReport(0x027D01),), True)
    for message, letter in ((event, "c"), (ack, "r"), (report, "r")):
        topic, payload = encode_publish(message, "gw-1")
        assert topic == f"k/gw-1/{letter}"
        assert decode_publish(topic, payload) == ("gw-1", message)
    with pytest.raises(WireDecodeError, match="expected Command or DrEvent, got DrAck"):
        decode_publish("k/gw-1/c", encode(ack))
    with pytest.raises(WireDecodeError, match="expected CommandResult or DrAck or DrReport"):
        decode_publish("k/gw-1/r", encode(event))
    with pytest.raises(WireDecodeError, match="expected Settings, got DrEvent"):
        decode_publish("k/gw-1/g", encode(event))
    assert decode_publish("k/gw-1/c", encode(Command(1, "restart", S)))[1].name == "restart"
    assert decode(encode(CommandResult(1, True)), expect=CommandResult) == CommandResult(1, True)
    assert decode(encode(Settings(1, S)), expect=Settings) == Settings(1, S)


def test_the_largest_report_fits_the_payload_limit() -> None:
    edt = bytes(range(MAX_EDT_BYTES))
    full = DrSet(0xFF, edt, True, edt, True)
    device = DrDeviceReport(EOJ_MAX, (full,) * MAX_DR_SETS, POWER_W_MIN, POWER_W_MAX, POWER_W_MIN)
    report = DrReport(2**63 - 1, (device,) * MAX_DR_DEVICES, False)
    assert len(encode(report)) < MAX_PAYLOAD_BYTES * 0.6
    round_trip(report)


# -- every field's bounds, refused on the way out and on the way in ------------------------

DEV = DrDeviceReport(0x027D01, (DrSet(0xDA, b"\x43", True, b"\x43"),), 0, -1000, 0)
LONG = bytes(MAX_EDT_BYTES + 1)
BAD: list[tuple[str, Any, type[WireError], str]] = [
    ("event id negative", DrEvent(-1, S, S + H, shed=1), WireEncodeError, "-1 outside"),
    ("event id over 63 bits", DrEvent(2**63, S, S + H, shed=1), WireEncodeError, "outside"),
    ("start not a half hour", DrEvent(1, S + 60, S + H, shed=1), WireEncodeError,
     "DrEvent.start_s"),
    ("end not a half hour", DrEvent(1, S, S + H + 1, shed=1), WireEncodeError, "DrEvent.end_s"),
    ("end before start", DrEvent(1, S, S - H, shed=1), WireEncodeError, "must end after"),
    ("empty window", DrEvent(1, S, S, shed=1), WireEncodeError, "must end after"),
    ("over 24 h", DrEvent(1, S, S + 49 * H, shed=1), WireEncodeError, "within 48 half hours"),
    ("start before 2000", DrEvent(1, 0, H, shed=1), WireEncodeError, "outside 2000-01-01"),
    ("end after 2099", DrEvent(1, MAX_TIME_S // H * H, MAX_TIME_S // H * H + H, shed=1),
     WireEncodeError, "outside 2000-01-01"),
    ("time as float", DrEvent(1, float(S), S + H, shed=1), WireEncodeError, "a float"),
    ("shed 0", DrEvent(1, S, S + H, shed=0), WireEncodeError, "0 outside 1..3"),
    ("shed 4", DrEvent(1, S, S + H, shed=4), WireEncodeError, "4 outside 1..3"),
    ("shed as bool", DrEvent(1, S, S + H, shed=True), WireEncodeError, "a boolean"),
    ("both targets and shed", DrEvent(1, S, S + H, ((S, 5),), 1), WireEncodeError, "not both"),
    ("neither", DrEvent(1, S, S + H), WireEncodeError, "targets or a shed level"),
    ("reduce 0 W", DrEvent(1, S, S + H, ((S, 0),)), WireEncodeError, "0 outside 1..1000000"),
    ("reduce too much", DrEvent(1, S, S + H, ((S, REDUCE_W_MAX + 1),)), WireEncodeError,
     "outside 1..1000000"),
    ("target before the window", DrEvent(1, S, S + 2 * H, ((S - H, 5),)), WireEncodeError,
     "targets[0].slot_start_s"),
    ("target at the end", DrEvent(1, S, S + 2 * H, ((S + 2 * H, 5),)), WireEncodeError,
     "targets[0].slot_start_s"),
    ("target off the grid", DrEvent(1, S, S + 2 * H, ((S + 60, 5),)), WireEncodeError,
     "not on a half hour of the window"),
    ("targets out of order", DrEvent(1, S, S + 2 * H, ((S + H, 5), (S, 5))), WireEncodeError,
     "targets[1].slot_start_s"),
    ("target twice", DrEvent(1, S, S + 2 * H, ((S, 5), (S, 6))), WireEncodeError,
     "targets[1].slot_start_s"),
    ("target not a pair", DrEvent(1, S, S + H, ((S, 5, 6),)), WireEncodeError, "a pair"),
    ("price negative", DrEvent(1, S, S + H, shed=1, price=((S, -1),)), WireEncodeError,
     "price[0].value"),
    ("price too high", DrEvent(1, S, S + H, shed=1, price=((S, PRICE_MAX + 1),)),
     WireEncodeError, "price[0].value"),
    ("deadline after the end", DrEvent(1, S, S + H, shed=1, opt_out_deadline_s=S + H + 1),
     WireEncodeError, "after the window's end"),
    ("cancelled not a bool", DrEvent(1, S, S + H, shed=1, cancelled=1), WireEncodeError,
     "DrEvent.cancelled"),
    ("ack state unknown", DrAck(1, "maybe", 0), WireEncodeError, "not a DrAckState"),
    ("ack devices negative", DrAck(1, DrAckState.REFUSED, -1), WireEncodeError, "DrAck.devices"),
    ("ack devices too many", DrAck(1, DrAckState.ACCEPTED, MAX_DR_DEVICES + 1), WireEncodeError,
     "DrAck.devices"),
    ("accepted on nothing", DrAck(1, DrAckState.ACCEPTED, 0), WireEncodeError, "accepted acts"),
    ("no devices but some", DrAck(1, DrAckState.NO_DEVICES, 2), WireEncodeError, "accepted acts"),
    ("reason empty", DrAck(1, DrAckState.REFUSED, 0, ""), WireEncodeError, "DrAck.reason"),
    ("reason too long", DrAck(1, DrAckState.REFUSED, 0, "x" * (MAX_REASON_LEN + 1)),
     WireLimitError, "at most 128"),
    ("reason with a newline", DrAck(1, DrAckState.REFUSED, 0, "a\nb"), WireEncodeError,
     "printable"),
    ("report devices not a tuple", DrReport(1, DEV, True), WireEncodeError, "DrReport.devices"),
    ("too many devices", DrReport(1, (DEV,) * (MAX_DR_DEVICES + 1), True), WireLimitError,
     "17 devices"),
    ("eoj over 3 bytes", DrReport(1, (DrDeviceReport(EOJ_MAX + 1),), True), WireEncodeError,
     "devices[0].eoj"),
    ("too many sets", DrReport(1, (DrDeviceReport(1, DEV.sets * (MAX_DR_SETS + 1)),), True),
     WireLimitError, "17 Sets"),
    ("epc below 0x80", DrReport(1, (DrDeviceReport(1, (DrSet(0x7F, b"\x01", True),)),), True),
     WireEncodeError, "sets[0].epc"),
    ("epc over a byte", DrReport(1, (DrDeviceReport(1, (DrSet(0x100, b"\x01", True),)),), True),
     WireEncodeError, "sets[0].epc"),
    ("empty EDT", DrReport(1, (DrDeviceReport(1, (DrSet(0x80, b"", True),)),), True),
     WireEncodeError, "sets[0].asked"),
    ("long EDT", DrReport(1, (DrDeviceReport(1, (DrSet(0x80, LONG, True),)),), True),
     WireLimitError, "sets[0].asked"),
    ("long read-back", DrReport(1, (DrDeviceReport(1, (DrSet(0x80, b"\x01", True, LONG),)),),
     True), WireLimitError, "sets[0].read_back"),
    ("EDT as text", DrReport(1, (DrDeviceReport(1, (DrSet(0x80, "1", True),)),), True),
     WireEncodeError, "expected a byte string"),
    ("accepted not a bool", DrReport(1, (DrDeviceReport(1, (DrSet(0x80, b"\x01", 1),)),), True),
     WireEncodeError, "sets[0].accepted"),
    ("restore not a bool",
     DrReport(1, (DrDeviceReport(1, (DrSet(0x80, b"\x01", True, None, None),)),), True),
     WireEncodeError, "sets[0].restore"),
    ("power over 32 bits", DrReport(1, (DrDeviceReport(1, (), POWER_W_MAX + 1),), True),
     WireEncodeError, "power_before_w"),
    ("power under 32 bits", DrReport(1, (DrDeviceReport(1, (), 0, POWER_W_MIN - 1),), True),
     WireEncodeError, "power_during_w"),
    ("ok not a bool", DrReport(1, (), None), WireEncodeError, "DrReport.ok"),
]  # fmt: skip


# Faults the layout cannot even express: a slot column has one entry a half hour of the
# window, so no slot is off the grid, before the window, out of order or there twice.
NOT_ON_THE_WIRE = {"target before the window", "target off the grid", "targets out of order",
                   "target twice", "target not a pair", "ack state unknown",
                   "report devices not a tuple"}  # fmt: skip
ON_THE_WIRE_SAYS = {"target at the end": "3 half hours, the window has 2"}


@pytest.mark.parametrize(("name", "message", "error", "text"), BAD, ids=[c[0] for c in BAD])
def test_every_bound_is_refused_both_ways(name: str, message: Any, error: type, text: str) -> None:
    with pytest.raises(error) as caught:
        encode(message)
    assert text in str(caught.value)
    if name in NOT_ON_THE_WIRE:
        return
    # The same fields from a peer: written without the checks, refused by decode.
    code = CODE_BY_CLASS[type(message)]
    fields = SPECS[code].to_wire(message)
    decoding_error = WireLimitError if error is WireLimitError else WireDecodeError
    with pytest.raises(decoding_error) as caught:
        decode(cbor2.dumps([code, WIRE_VERSION, *fields]))
    assert ON_THE_WIRE_SAYS.get(name, text) in str(caught.value)


MALFORMED = [
    ("targets longer than the window", [7, 3, 1, S, S + H, [5, 5], None, None, None, False],
     "2 half hours, the window has 1"),
    ("targets as a map", [7, 3, 1, S, S + H, {"a": 1}, None, None, None, False],
     "expected an array or null"),
    ("ack state code unknown", [8, 3, 1, 9, 0, None], "not a DrAck state code"),
    ("ack state as text", [8, 3, 1, "accepted", 0, None], "not a DrAck state code"),
    ("report devices as a map", [9, 3, 1, {}, True], "expected an array"),
    ("device short", [9, 3, 1, [[1, []]], True], "2 fields, need 5"),
    ("set short", [9, 3, 1, [[1, [[0x80, b"\x01"]], None, None, None]], True], "need 5"),
    ("sets as null", [9, 3, 1, [[1, None, None, None, None]], True], "expected an array"),
    ("event short", [7, 3, 1, S, S + H], "3 fields, need 8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "text"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_dr_payloads(body: list, text: str) -> None:
    with pytest.raises(WireDecodeError, match=text):
        decode(cbor2.dumps(body))


def test_trailing_fields_of_a_newer_peer_are_ignored_in_the_nested_arrays() -> None:
    report = DrReport(3, (DEV,), True)
    body = cbor2.loads(encode(report))
    body[3][0].append("new")  # a device field appended by a newer peer
    body[3][0][1][0].append(42)  # and a Set's
    assert decode(cbor2.dumps([*body, "more"])) == report


# -- fuzz: only WireError out, whatever decodes encodes back to itself ---------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dr_messages, st.integers(0, 2**32), st.integers(1, 4))
def test_fuzz_mutations_of_dr_messages(message: Any, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    data = encode(message)
    for _ in range(rounds):
        data = mutate(data, rng, [data])
    check(data, Counter())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([b"\x8a\x07\x03", b"\x86\x08\x03", b"\x85\x09\x03"]))
def test_fuzz_random_bytes_behind_a_dr_envelope(tail: bytes, head: bytes) -> None:
    check(head + tail, Counter())
