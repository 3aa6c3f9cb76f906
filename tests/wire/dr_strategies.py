"""Hypothesis strategies of the demand-response messages, shared by the round-trip and the
fuzz tests (tests/wire/test_messages.py puts them into its `messages`)."""

from __future__ import annotations

from hypothesis import strategies as st

from kenshin.wire import (
    MAX_DR_SLOTS,
    MAX_EDT_BYTES,
    MAX_REASON_LEN,
    MAX_TIME_S,
    MIN_TIME_S,
    DrAck,
    DrAckState,
    DrDeviceReport,
    DrEvent,
    DrReport,
    DrSet,
)
from kenshin.wire.checks import EOJ_MAX, PRICE_MAX, REDUCE_W_MAX
from kenshin.wire.codec import POWER_W_MAX, POWER_W_MIN, SLOT_S

half_hours = st.integers(-(-MIN_TIME_S // SLOT_S), (MAX_TIME_S - 86_400) // SLOT_S).map(
    lambda k: k * SLOT_S
)


@st.composite
def dr_events(draw: st.DrawFn) -> DrEvent:
    start = draw(half_hours)
    slots = draw(st.integers(1, MAX_DR_SLOTS))
    end = start + slots * SLOT_S

    def per_slot(lo: int, hi: int) -> tuple[tuple[int, int], ...]:
        chosen = sorted(draw(st.sets(st.integers(0, slots - 1), max_size=slots)))
        return tuple((start + i * SLOT_S, draw(st.integers(lo, hi))) for i in chosen)

    cancelled = draw(st.booleans())
    targets, shed = (), None
    ask = draw(st.sampled_from(["targets", "shed", "none"]))
    if ask == "targets":
        targets = per_slot(1, REDUCE_W_MAX)
    if ask == "shed" or (not targets and not cancelled):
        shed = draw(st.integers(1, 3))
    deadline = draw(st.one_of(st.none(), st.integers(MIN_TIME_S, end)))
    return DrEvent(draw(st.integers(0, 2**63 - 1)), start, end, targets, shed,
                   per_slot(0, PRICE_MAX), deadline, cancelled)  # fmt: skip


reasons = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1,
                  max_size=MAX_REASON_LEN)  # fmt: skip


@st.composite
def dr_acks(draw: st.DrawFn) -> DrAck:
    state = draw(st.sampled_from(DrAckState))
    lo, hi = {DrAckState.ACCEPTED: (1, 16), DrAckState.NO_DEVICES: (0, 0)}.get(state, (0, 16))
    return DrAck(draw(st.integers(0, 2**63 - 1)), state, draw(st.integers(lo, hi)),
                 draw(st.one_of(st.none(), reasons)))  # fmt: skip


edts = st.binary(min_size=1, max_size=MAX_EDT_BYTES)
powers = st.one_of(st.none(), st.integers(POWER_W_MIN, POWER_W_MAX))
dr_sets = st.builds(
    DrSet, st.integers(0x80, 0xFF), edts, st.booleans(), st.one_of(st.none(), edts), st.booleans()
)
dr_device_reports = st.builds(
    DrDeviceReport,
    st.integers(0, EOJ_MAX),
    st.lists(dr_sets, max_size=6).map(tuple),
    powers,
    powers,
    powers,
)
dr_reports = st.builds(
    DrReport, st.integers(0, 2**63 - 1), st.lists(dr_device_reports, max_size=5).map(tuple),
    st.booleans(),
)  # fmt: skip
dr_messages = st.one_of(dr_events(), dr_acks(), dr_reports)
