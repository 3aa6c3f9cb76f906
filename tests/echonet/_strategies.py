"""Value generators for every EDT codec type, shared by the codec, fuzz and device tests.

Two tables keyed by codec type: hypothesis strategies (for shrinking property tests) and
plain `random.Random` samplers (for the high-volume fuzz loop and its corpus). A codec
type missing from either table fails `test_every_codec_type_has_a_strategy`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from hypothesis import strategies as st

from kenshin.echonet import edt as e
from kenshin.echonet.classes import all_classes
from kenshin.echonet.frame import EOJ, ESV, Frame, Property
from kenshin.jst import JST

ENERGY_MAX = e.ENERGY_RAW.maximum
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))  # printable ASCII


def registered_specs() -> list[tuple[str, int, Any]]:
    """(class name, EPC, PropertySpec) for every property of every registered class."""
    return [
        (cls.name, epc, spec)
        for cls in all_classes()
        for epc, spec in sorted(cls.properties.items())
    ]


def concrete_codec_types() -> set[type[e.Codec]]:
    """Every Codec subclass defined in kenshin.echonet (registered or not)."""
    seen: set[type[e.Codec]] = set()
    todo = list(e.Codec.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            todo.extend(cls.__subclasses__())
    return {c for c in seen if c.__module__.startswith("kenshin.echonet")}


# -- hypothesis strategies ---------------------------------------------------------------

energy = st.one_of(st.none(), st.integers(0, ENERGY_MAX))


def jst_datetimes(*, step_minutes: int | None = None, seconds: bool = True) -> st.SearchStrategy:
    """Aware JST datetimes as a meter sends them (whole seconds; whole minutes on a step)."""
    base = st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
        timezones=st.just(JST),
    )  # fmt: skip
    if step_minutes is not None:
        return base.map(
            lambda d: d.replace(minute=d.minute - d.minute % step_minutes, second=0, microsecond=0)
        )
    if not seconds:
        return base.map(lambda d: d.replace(second=0, microsecond=0))
    return base.map(lambda d: d.replace(microsecond=0))


def _unsigned(c: e.Unsigned) -> st.SearchStrategy:
    values = st.integers(c.minimum, c.maximum).filter(lambda v: v not in c.no_data)
    return st.one_of(st.none(), values) if c.no_data else values


def _signed(c: e.Signed) -> st.SearchStrategy:
    mask = (1 << (8 * c.size)) - 1
    values = st.integers(c.minimum, c.maximum).filter(lambda v: v & mask not in c.no_data)
    return st.one_of(st.none(), values) if c.no_data else values


def _ascii(c: e.Ascii) -> st.SearchStrategy:
    # Trailing spaces and NULs are padding on the wire, so a value never ends with one.
    return st.text(st.sampled_from(PRINTABLE), max_size=c.size).filter(lambda s: s[-1:] != " ")


def _property_map(c: e.PropertyMapCodec) -> st.SearchStrategy:
    listed = st.frozensets(st.integers(0, 0xFF), max_size=15)  # one EPC per byte
    bitmap = st.frozensets(st.integers(0x80, 0xFF), min_size=16, max_size=128)
    return st.one_of(listed, bitmap)


def _history_time(c: e.HistoryTimeCodec) -> st.SearchStrategy:
    return st.builds(
        e.HistoryTime,
        st.one_of(st.none(), jst_datetimes(step_minutes=c.step_minutes)),
        st.integers(1, c.max_count),
    )


def _history2(c: e.History2Codec) -> st.SearchStrategy:
    return st.builds(
        e.History2,
        st.one_of(st.none(), jst_datetimes(step_minutes=c.step_minutes)),
        st.just(c.step_minutes),
        st.lists(st.tuples(energy, energy), min_size=1, max_size=c.max_count).map(tuple),
    )


_phase = st.integers(-0x7FFF, 0x7FFD)


def _power_range(c: e.PowerRangeCodec) -> st.SearchStrategy:
    watts = st.integers(0, c.LIMIT)
    return st.tuples(watts, watts).map(lambda p: e.PowerRange(min(p), max(p)))


def _r_power_range(c: e.PowerRangeCodec, r: random.Random) -> e.PowerRange:
    low, high = sorted((r.choice((0, c.LIMIT, r.randint(0, c.LIMIT))), r.randint(0, c.LIMIT)))
    return e.PowerRange(low, high)


STRATEGIES: dict[type, Callable[[Any], st.SearchStrategy]] = {
    e.Unsigned: _unsigned,
    e.Signed: _signed,
    e.Choice: lambda c: st.sampled_from(list(c.enum)),
    e.Raw: lambda c: st.binary(min_size=c.min_size, max_size=c.max_size),
    e.Ascii: _ascii,
    e.DateCodec: lambda c: st.dates(),
    e.TimeCodec: lambda c: st.builds(time, st.integers(0, 23), st.integers(0, 59)),
    e.PropertyMapCodec: _property_map,
    e.InstanceListCodec: lambda c: st.lists(
        st.builds(EOJ, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
        max_size=84,
    ).map(tuple),
    e.ClassListCodec: lambda c: st.lists(st.integers(0, 0xFFFF), max_size=8).map(tuple),
    e.StandardVersionCodec: lambda c: st.builds(
        e.StandardVersion, st.sampled_from(string.ascii_uppercase), st.integers(0, 255)
    ),
    e.NodeVersionCodec: lambda c: st.builds(
        e.NodeVersion, st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF)
    ),
    e.CurrentsCodec: lambda c: st.builds(e.Currents, _phase, st.one_of(st.none(), _phase)),
    e.FixedTimeEnergyCodec: lambda c: st.builds(e.FixedTimeEnergy, jst_datetimes(), energy),
    e.History1Codec: lambda c: st.builds(
        e.History1,
        st.integers(0, 99),
        st.lists(energy, min_size=e.HISTORY1_SLOTS, max_size=e.HISTORY1_SLOTS).map(tuple),
    ),
    e.HistoryTimeCodec: _history_time,
    e.History2Codec: _history2,
    e.OneMinuteEnergyCodec: lambda c: st.builds(e.OneMinuteEnergy, jst_datetimes(), energy, energy),
    e.PowerRangeCodec: _power_range,
}


def values_for(codec: e.Codec) -> st.SearchStrategy:
    return STRATEGIES[type(codec)](codec)


def edts_for(codec: e.Codec) -> st.SearchStrategy[bytes]:
    """Valid EDTs of this codec."""
    return values_for(codec).map(codec.encode)


# -- random.Random samplers (fast, for the fuzz volume loop) -----------------------------


def _r_energy(r: random.Random) -> int | None:
    return None if r.random() < 0.1 else r.randint(0, ENERGY_MAX)


def _r_datetime(r: random.Random, step_minutes: int = 0, seconds: bool = True) -> datetime:
    d = datetime(r.randint(1990, 2100), 1, 1, tzinfo=JST) + timedelta(
        minutes=r.randrange(366 * 24 * 60)
    )
    if step_minutes:
        d = d.replace(minute=d.minute - d.minute % step_minutes)
    return d.replace(second=r.randint(0, 59)) if seconds and not step_minutes else d


def _r_int(r: random.Random, lo: int, hi: int, no_data: tuple[int, ...], mask: int) -> Any:
    if no_data and r.random() < 0.2:
        return None
    while True:
        v = r.choice((lo, hi, r.randint(lo, hi)))
        if v & mask not in no_data:
            return v


def _r_property_map(r: random.Random) -> frozenset[int]:
    if r.random() < 0.5:
        return frozenset(r.sample(range(256), r.randint(0, 15)))
    return frozenset(r.sample(range(0x80, 0x100), r.randint(16, 128)))


SAMPLERS: dict[type, Callable[[Any, random.Random], Any]] = {
    e.Unsigned: lambda c, r: _r_int(r, c.minimum, c.maximum, c.no_data, -1),
    e.Signed: lambda c, r: _r_int(r, c.minimum, c.maximum, c.no_data, (1 << 8 * c.size) - 1),
    e.Choice: lambda c, r: r.choice(list(c.enum)),
    e.Raw: lambda c, r: r.randbytes(r.randint(c.min_size, min(c.max_size, 32))),
    e.Ascii: lambda c, r: "".join(r.choice(string.ascii_letters) for _ in range(c.size)),
    e.DateCodec: lambda c, r: date(2024, 1, 1) + timedelta(days=r.randrange(3000)),
    e.TimeCodec: lambda c, r: time(r.randint(0, 23), r.randint(0, 59)),
    e.PropertyMapCodec: lambda c, r: _r_property_map(r),
    e.InstanceListCodec: lambda c, r: tuple(EOJ(*r.randbytes(3)) for _ in range(r.randint(0, 84))),
    e.ClassListCodec: lambda c, r: tuple(r.randint(0, 0xFFFF) for _ in range(r.randint(0, 8))),
    e.StandardVersionCodec: lambda c, r: e.StandardVersion(
        r.choice(string.ascii_uppercase), r.randint(0, 255)
    ),
    e.NodeVersionCodec: lambda c, r: e.NodeVersion(1, r.randint(0, 14), 0x0100),
    e.CurrentsCodec: lambda c, r: e.Currents(
        r.randint(-0x7FFF, 0x7FFD), None if r.random() < 0.5 else r.randint(-0x7FFF, 0x7FFD)
    ),
    e.FixedTimeEnergyCodec: lambda c, r: e.FixedTimeEnergy(_r_datetime(r), _r_energy(r)),
    e.History1Codec: lambda c, r: e.History1(
        r.randint(0, 99), tuple(_r_energy(r) for _ in range(e.HISTORY1_SLOTS))
    ),
    e.HistoryTimeCodec: lambda c, r: e.HistoryTime(
        None if r.random() < 0.1 else _r_datetime(r, c.step_minutes), r.randint(1, c.max_count)
    ),
    e.History2Codec: lambda c, r: e.History2(
        _r_datetime(r, c.step_minutes),
        c.step_minutes,
        tuple((_r_energy(r), _r_energy(r)) for _ in range(r.randint(1, c.max_count))),
    ),
    e.OneMinuteEnergyCodec: lambda c, r: e.OneMinuteEnergy(
        _r_datetime(r), _r_energy(r), _r_energy(r)
    ),
    e.PowerRangeCodec: _r_power_range,
}


def sample_edt(codec: e.Codec, r: random.Random) -> bytes:
    return codec.encode(SAMPLERS[type(codec)](codec, r))


# -- frames ------------------------------------------------------------------------------

eojs = st.builds(EOJ, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
properties = st.builds(Property, st.integers(0, 255), st.binary(max_size=255))


@st.composite
def frames(draw: st.DrawFn, esv: ESV | None = None, max_props: int = 6) -> Frame:
    """Any well-formed format-1 frame (EDTs are opaque bytes here)."""
    esv = draw(st.sampled_from(list(ESV))) if esv is None else esv
    if esv.carries_two_lists:
        props = draw(st.lists(properties, max_size=max_props))
        props_get = draw(st.lists(properties, max_size=max_props))
    else:
        props = draw(st.lists(properties, min_size=1, max_size=max_props))
        props_get = []
    return Frame(
        draw(st.integers(0, 0xFFFF)), draw(eojs), draw(eojs), esv, tuple(props), tuple(props_get)
    )


@st.composite
def typed_frames(draw: st.DrawFn) -> Frame:
    """A Get_Res/INF from an object of some registered class, every EDT valid for it."""
    cls = draw(st.sampled_from(all_classes()))
    specs = sorted(cls.properties.values(), key=lambda s: s.epc)
    chosen = draw(st.lists(st.sampled_from(specs), min_size=1, max_size=5))
    props = tuple(Property(s.epc, draw(edts_for(s.codec))) for s in chosen)
    seoj = EOJ(cls.class_code >> 8, cls.class_code & 0xFF, draw(st.integers(1, 3)))
    esv = draw(st.sampled_from([ESV.GET_RES, ESV.INF, ESV.GET_SNA, ESV.INFC]))
    return Frame(draw(st.integers(0, 0xFFFF)), seoj, EOJ(5, 0xFF, 1), esv, props)
