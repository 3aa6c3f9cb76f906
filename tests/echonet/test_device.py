"""The device role, sans-I/O: `LocalNode.handle` answers as the specification says."""

from __future__ import annotations

from datetime import datetime

import pytest

from kenshin.echonet import (
    CONTROLLER,
    EOJ,
    ESV,
    JST,
    NODE_PROFILE,
    SMART_METER,
    Access,
    Frame,
    LocalNode,
    LocalObject,
    Property,
    PropertyRefused,
    decode_property,
)
from kenshin.echonet import edt as e

PV = EOJ(0x02, 0x79, 0x01)
EA_VALUE = e.FixedTimeEnergy(datetime(2024, 6, 1, 12, 30, tzinfo=JST), 12_345)


def make_meter(instance: int = 1, power_w: int = 500) -> LocalObject:
    obj = LocalObject(SMART_METER.with_instance(instance))
    obj.set_value(0x80, e.OnOff.ON)
    obj.set_value(0x81, b"\x00")
    obj.set_value(0x82, e.StandardVersion("J"))
    obj.set_value(0x88, e.FaultStatus.NO_FAULT)
    obj.set_value(0x8A, 0x000016)
    obj.set_value(0xD3, 1)
    obj.set_value(0xD7, 6)
    obj.set_value(0xE0, 12_345 * instance)
    obj.set_value(0xE1, e.EnergyUnit.KWH_0_1)
    obj.set_value(0xE5, 0)
    obj.set_value(0xEA, EA_VALUE)
    obj.bind(0xE7, get=lambda: power_w.to_bytes(4, "big", signed=True))
    obj.refresh_property_maps()
    return obj


@pytest.fixture
def meter() -> LocalObject:
    return make_meter()


@pytest.fixture
def node(meter: LocalObject) -> LocalNode:
    return LocalNode([meter], manufacturer_code=0x000016)


def request(esv: ESV, *props: Property, deoj: EOJ = SMART_METER, get=(), tid=0x0102) -> Frame:
    return Frame(tid, CONTROLLER, deoj, esv, tuple(props), tuple(get))


def only(answers: list[Frame]) -> Frame:
    assert len(answers) == 1, answers
    return answers[0]


def u(value: int, size: int = 1) -> bytes:
    return value.to_bytes(size, "big")


# -- Get -----------------------------------------------------------------------------------


def test_get_answers_get_res(node: LocalNode) -> None:
    answer = only(node.handle(request(ESV.GET, Property(0xE7), Property(0xE0))))
    assert answer == Frame(
        0x0102, SMART_METER, CONTROLLER, ESV.GET_RES,
        (Property(0xE7, u(500, 4)), Property(0xE0, u(12_345, 4))),
    )  # fmt: skip


def test_get_refused_epc_has_pdc_0(node: LocalNode) -> None:
    answer = only(node.handle(request(ESV.GET, Property(0xE7), Property(0xC0), Property(0xE0))))
    assert answer.esv == ESV.GET_SNA
    assert answer.props == (
        Property(0xE7, u(500, 4)),
        Property(0xC0, b""),  # not served: EPC echoed with PDC 0
        Property(0xE0, u(12_345, 4)),
    )


def test_get_of_announce_only_property_is_refused(node: LocalNode) -> None:
    answer = only(node.handle(request(ESV.GET, Property(0xD5), deoj=NODE_PROFILE)))
    assert answer.esv == ESV.GET_SNA and answer.props == (Property(0xD5),)


def test_getter_failure_is_a_refusal_and_getters_run_once(meter: LocalObject) -> None:
    calls = []

    def flaky() -> bytes:
        calls.append(1)
        raise ValueError("sensor busy")

    def counted() -> bytes:
        calls.append(2)
        return u(7, 4)

    meter.bind(0xE3, get=flaky)
    meter.bind(0xE0, get=counted)
    node = LocalNode([meter])
    answer = only(node.handle(request(ESV.GET, Property(0xE3), Property(0xE0))))
    assert answer.esv == ESV.GET_SNA
    assert answer.props == (Property(0xE3), Property(0xE0, u(7, 4)))
    assert calls == [1, 2]  # one read per requested property, not two


# -- SetC / SetI ---------------------------------------------------------------------------


def test_setc_accepted_answers_pdc_0(node: LocalNode, meter: LocalObject) -> None:
    answer = only(node.handle(request(ESV.SETC, Property(0xE5, b"\x01"))))
    assert answer == Frame(0x0102, SMART_METER, CONTROLLER, ESV.SET_RES, (Property(0xE5),))
    assert meter.value(0xE5) == 1


@pytest.mark.parametrize(
    "prop",
    [
        Property(0xD3, u(10, 4)),  # read-only
        Property(0xE7, u(1, 4)),  # read-only, bound to a getter
        Property(0xE5, b"\x64"),  # 100: outside 0..99
        Property(0xE5, b"\x01\x00"),  # wrong size
        Property(0xE5, b""),  # no EDT at all
        Property(0xC5, b"\x01"),  # not served
    ],
    ids=["read-only", "getter-only", "out-of-range", "wrong-size", "empty", "unknown"],
)
def test_setc_refused_echoes_the_edt(node: LocalNode, meter: LocalObject, prop: Property) -> None:
    before = {epc: meter.read(epc) for epc in (0xD3, 0xE5, 0xE7)}
    answer = only(node.handle(request(ESV.SETC, prop)))
    assert answer.esv == ESV.SETC_SNA
    assert answer.props == (prop,)
    assert {epc: meter.read(epc) for epc in (0xD3, 0xE5, 0xE7)} == before


def test_setc_mixed_accepts_some(node: LocalNode, meter: LocalObject) -> None:
    answer = only(node.handle(request(
        ESV.SETC, Property(0xE5, b"\x02"), Property(0xD3, u(10, 4)), Property(0x80, b"\x31")
    )))  # fmt: skip
    assert answer.esv == ESV.SETC_SNA
    assert answer.props == (Property(0xE5), Property(0xD3, u(10, 4)), Property(0x80))
    assert meter.value(0xE5) == 2 and meter.value(0x80) == e.OnOff.OFF
    assert meter.value(0xD3) == 1


def test_setter_may_refuse(meter: LocalObject) -> None:
    def refuse_old_days(edt: bytes) -> None:
        if edt[0] > 7:
            raise PropertyRefused("this meter keeps 7 days")
        meter.set_value(0xE5, edt)

    def broken(edt: bytes) -> None:
        raise ValueError("no")

    meter.bind(0xE5, get=lambda: b"\x00", set=refuse_old_days)
    meter.bind(0x81, get=lambda: b"\x00", set=broken)
    node = LocalNode([meter])
    assert only(node.handle(request(ESV.SETC, Property(0xE5, b"\x07")))).esv == ESV.SET_RES
    refused = only(node.handle(request(ESV.SETC, Property(0xE5, b"\x08"))))
    assert refused.esv == ESV.SETC_SNA and refused.props == (Property(0xE5, b"\x08"),)
    assert only(node.handle(request(ESV.SETC, Property(0x81, b"\x01")))).esv == ESV.SETC_SNA


def test_seti_success_gets_no_answer(node: LocalNode, meter: LocalObject) -> None:
    assert node.handle(request(ESV.SETI, Property(0xE5, b"\x03"))) == []
    assert meter.value(0xE5) == 3


def test_seti_refused_answers_seti_sna(node: LocalNode) -> None:
    answer = only(node.handle(request(ESV.SETI, Property(0xE5, b"\x04"), Property(0xD3, u(2, 4)))))
    assert answer.esv == ESV.SETI_SNA
    assert answer.props == (Property(0xE5), Property(0xD3, u(2, 4)))


# -- INF_REQ -------------------------------------------------------------------------------


def test_inf_req_answers_inf(node: LocalNode) -> None:
    answer = only(node.handle(request(ESV.INF_REQ, Property(0xEA))))
    assert answer.esv == ESV.INF
    assert answer.seoj == SMART_METER and answer.deoj == CONTROLLER
    assert decode_property(0x0288, 0xEA, answer.get(0xEA)) == EA_VALUE


def test_inf_req_refused_answers_inf_sna(node: LocalNode) -> None:
    answer = only(node.handle(request(ESV.INF_REQ, Property(0xEA), Property(0xC0))))
    assert answer.esv == ESV.INF_SNA
    assert answer.props[1] == Property(0xC0)
    assert answer.props[0].epc == 0xEA and len(answer.props[0].edt) == 11


def test_inf_req_of_instance_list(node: LocalNode) -> None:
    """The AIF start-up fallback: INF_REQ of D5 (announce-only) to the node profile."""
    answer = only(node.handle(request(ESV.INF_REQ, Property(0xD5), deoj=NODE_PROFILE)))
    assert answer.esv == ESV.INF and answer.seoj == NODE_PROFILE
    assert decode_property(0x0EF0, 0xD5, answer.get(0xD5)) == (SMART_METER,)


# -- SetGet --------------------------------------------------------------------------------


def test_setget_answers_two_lists(node: LocalNode) -> None:
    answer = only(node.handle(request(
        ESV.SETGET, Property(0xE5, b"\x01"), get=(Property(0xE5), Property(0xE0))
    )))  # fmt: skip
    assert answer.esv == ESV.SETGET_RES
    assert answer.props == (Property(0xE5),)
    assert answer.props_get == (Property(0xE5, b"\x01"), Property(0xE0, u(12_345, 4)))


def test_setget_refused_set_answers_sna(node: LocalNode) -> None:
    answer = only(node.handle(request(
        ESV.SETGET, Property(0xD3, u(5, 4)), get=(Property(0xE0),)
    )))  # fmt: skip
    assert answer.esv == ESV.SETGET_SNA
    assert answer.props == (Property(0xD3, u(5, 4)),)
    assert answer.props_get == (Property(0xE0, u(12_345, 4)),)


def test_setget_refused_get_answers_sna(node: LocalNode) -> None:
    answer = only(node.handle(request(
        ESV.SETGET, Property(0xE5, b"\x01"), get=(Property(0xC0),)
    )))  # fmt: skip
    assert answer.esv == ESV.SETGET_SNA
    assert answer.props == (Property(0xE5),) and answer.props_get == (Property(0xC0),)


def test_setget_with_empty_set_list(node: LocalNode) -> None:
    answer = only(node.handle(request(ESV.SETGET, get=(Property(0xE7),))))
    assert answer.esv == ESV.SETGET_RES
    assert answer.props == () and answer.props_get == (Property(0xE7, u(500, 4)),)
    assert Frame.to_bytes(answer)[11:13] == b"\x00\x01"  # OPCSet 0, OPCGet 1


# -- addressing ----------------------------------------------------------------------------


def test_instance_0_addresses_every_instance() -> None:
    m1, m2 = make_meter(1), make_meter(2)
    node = LocalNode([m1, m2])
    answers = node.handle(request(ESV.GET, Property(0xE0), deoj=EOJ(0x02, 0x88, 0x00)))
    assert [(a.seoj, a.get(0xE0)) for a in answers] == [
        (EOJ(2, 0x88, 1), u(12_345, 4)),
        (EOJ(2, 0x88, 2), u(24_690, 4)),
    ]
    answers = node.handle(request(ESV.SETC, Property(0xE5, b"\x05"), deoj=EOJ(2, 0x88, 0)))
    assert [a.esv for a in answers] == [ESV.SET_RES, ESV.SET_RES]
    assert m1.value(0xE5) == m2.value(0xE5) == 5
    profile = only(node.handle(request(ESV.GET, Property(0xD3), deoj=EOJ(0x0E, 0xF0, 0x00))))
    assert profile.seoj == NODE_PROFILE


@pytest.mark.parametrize("deoj", [EOJ(2, 0x88, 2), EOJ(2, 0x79, 1), EOJ(2, 0x79, 0)])
def test_unknown_object_gets_no_answer(node: LocalNode, deoj: EOJ) -> None:
    for esv in (ESV.GET, ESV.SETC, ESV.SETI, ESV.INF_REQ, ESV.INFC):
        assert node.handle(request(esv, Property(0x80, b"\x30"), deoj=deoj)) == []


@pytest.mark.parametrize(
    "esv", [ESV.GET_RES, ESV.GET_SNA, ESV.SET_RES, ESV.SETC_SNA, ESV.INF, ESV.INFC_RES,
            ESV.SETI_SNA, ESV.INF_SNA],
)  # fmt: skip
def test_answers_and_announcements_are_not_answered(node: LocalNode, esv: ESV) -> None:
    assert node.handle(request(esv, Property(0xE7, u(1, 4)))) == []
    assert node.handle(request(ESV.SETGET_RES, get=(Property(0xE7),))) == []


def test_infc_is_acknowledged(node: LocalNode) -> None:
    infc = Frame(0x0777, CONTROLLER, SMART_METER, ESV.INFC, (Property(0xE7, u(5, 4)),))
    assert node.handle(infc) == [
        Frame(0x0777, SMART_METER, CONTROLLER, ESV.INFC_RES, (Property(0xE7),))
    ]


def test_response_frames_encode(node: LocalNode) -> None:
    for esv in (ESV.GET, ESV.SETC, ESV.SETI, ESV.INF_REQ):
        for answer in node.handle(request(esv, Property(0xE5, b"\x01"), Property(0xC0, b"\x01"))):
            assert Frame.to_bytes(answer)


# -- the node profile ----------------------------------------------------------------------


def test_node_profile_describes_the_node() -> None:
    pv = LocalObject(PV)
    pv.set_value(0xE0, 1200)
    node = LocalNode([make_meter(1), make_meter(2), pv], manufacturer_code=0x000016)
    profile = node.profile
    assert profile.eoj == NODE_PROFILE
    assert profile.value(0xD3) == 3  # device instances
    assert profile.value(0xD4) == 3  # classes, counting the node profile class itself
    instances = (EOJ(2, 0x88, 1), EOJ(2, 0x88, 2), PV)
    assert profile.value(0xD5) == instances
    assert profile.value(0xD6) == instances
    assert profile.value(0xD7) == (0x0288, 0x0279)
    assert profile.value(0x8A) == 0x000016
    assert profile.value(0x83) == b"\xfe\x00\x00\x16" + bytes(13)
    assert profile.value(0x82) == e.NodeVersion(1, 13, 0x0100)
    answer = only(node.handle(request(
        ESV.GET, *(Property(epc) for epc in (0xD3, 0xD4, 0xD6, 0xD7)), deoj=NODE_PROFILE
    )))  # fmt: skip
    assert answer.esv == ESV.GET_RES
    assert answer.get(0xD6) == bytes([3, 2, 0x88, 1, 2, 0x88, 2, 2, 0x79, 1])
    assert answer.get(0xD7) == bytes([2, 2, 0x88, 2, 0x79])
    assert answer.get(0xD3) == b"\x00\x00\x03" and answer.get(0xD4) == b"\x00\x03"


def test_node_profile_property_maps(node: LocalNode) -> None:
    profile = node.profile
    assert 0xD5 in profile.value(0x9D)  # announced at start-up
    assert 0xD5 not in profile.value(0x9F)  # but not readable by Get
    assert {0x80, 0x82, 0x83, 0x8A, 0x9D, 0x9E, 0x9F, 0xD3, 0xD4, 0xD6, 0xD7} <= profile.value(0x9F)
    assert profile.value(0x9E) == frozenset()


def test_instance_list_announcement(node: LocalNode) -> None:
    frame = node.instance_list_announcement(tid=9)
    assert frame == Frame(
        9, NODE_PROFILE, NODE_PROFILE, ESV.INF, (Property(0xD5, bytes([1, 2, 0x88, 1])),)
    )
    assert frame.to_bytes() == bytes.fromhex("1081 0009 0EF001 0EF001 73 01 D5 04 01028801")


def test_announcement_of_fixed_time_energy(node: LocalNode) -> None:
    frame = node.announcement(SMART_METER, [0xEA], tid=3)
    assert frame.esv == ESV.INF and frame.seoj == SMART_METER and frame.deoj == NODE_PROFILE
    assert decode_property(0x0288, 0xEA, frame.get(0xEA)) == EA_VALUE


# -- property maps derived from bindings ---------------------------------------------------


def test_device_property_maps_follow_bindings(meter: LocalObject) -> None:
    LocalNode([meter])
    get_map = meter.value(0x9F)
    assert get_map == meter.epcs_with(Access.GET) | {0x9D, 0x9E, 0x9F}
    assert get_map == {0x80, 0x81, 0x82, 0x88, 0x8A, 0xD3, 0xD7, 0xE0, 0xE1, 0xE5, 0xE7, 0xEA,
                       0x9D, 0x9E, 0x9F}  # fmt: skip
    assert meter.value(0x9E) == {0x80, 0x81, 0xE5}  # the Set ones of the spec
    assert meter.value(0x9D) == {0x80, 0x81, 0x88, 0xEA}  # the announced ones
    # Bind more: the maps follow after a refresh, and reach the 16 that make a bitmap.
    meter.bind(0xEB, get=lambda: e.FixedTimeEnergyCodec().encode(EA_VALUE))
    meter.bind(0xE3, get=lambda: u(0, 4))
    meter.bind(0xE5, get=lambda: b"\x00")  # now without a setter: no longer settable
    meter.refresh_property_maps()
    assert {0xEB, 0xE3} <= meter.value(0x9F)
    assert 0xEB in meter.value(0x9D)
    assert meter.value(0x9E) == {0x80, 0x81}
    assert len(meter.read(0x9F)) == 17 and meter.read(0x9F)[0] == 17


def test_property_maps_answer_through_get(node: LocalNode) -> None:
    answer = only(node.handle(request(ESV.GET, Property(0x9E))))
    assert answer.get(0x9E) == bytes([3, 0x80, 0x81, 0xE5])
    maps_refused = only(node.handle(request(ESV.SETC, Property(0x9F, b"\x00"))))
    assert maps_refused.esv == ESV.SETC_SNA
