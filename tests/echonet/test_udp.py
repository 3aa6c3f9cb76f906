"""ECHONET Lite over real UDP sockets on loopback (127.0.0.x / 127.0.1.x only): discovery,
requests, TID matching, retries, timeouts, announcements, bad input, one request per node."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import pytest

from kenshin.echonet import (
    CONTROLLER,
    ESV,
    NODE_PROFILE,
    SMART_METER,
    EchonetDecodeError,
    Frame,
    LocalNode,
    Property,
)
from kenshin.echonet import edt as e
from kenshin.echonet.udp import (
    EchonetClient,
    EchonetDeviceEndpoint,
    EchonetTimeout,
    MulticastListener,
    PropertyMaps,
)
from tests.support import eventually, free_udp_port, run

from .test_device import EA_VALUE, make_meter

T = TypeVar("T")
Address = tuple[str, int]


class Tracker:
    """Requests in flight across every device of a test."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0


class FaultyDevice(EchonetDeviceEndpoint):
    """A device endpoint that records what it receives and misbehaves on request: drops
    some requests, answers late, answers twice, or replays its previous (stale) answer."""

    def __init__(
        self,
        node: LocalNode,
        *,
        drop: Iterable[int] = (),
        delay_s: float = 0.0,
        duplicate: bool = False,
        replay_stale: bool = False,
        tracker: Tracker | None = None,
        **kw: Any,
    ):
        super().__init__(node, **kw)
        self.drop = set(drop)
        self.delay_s, self.duplicate, self.replay_stale = delay_s, duplicate, replay_stale
        self.tracker = tracker or Tracker()
        self.seen: list[tuple[Frame, Address]] = []
        self.requests: list[Frame] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.previous: list[Frame] = []
        self.before_answer: Callable[[Frame, list[Frame], Address], None] | None = None

    def respond(self, frame: Frame, source: Address) -> None:
        self.seen.append((frame, source))
        if not frame.esv.is_request:
            super().respond(frame, source)
            return
        index = len(self.requests)
        self.requests.append(frame)
        if index in self.drop:
            return
        answers = self.node.handle(frame)
        self.in_flight += 1
        self.tracker.now += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.tracker.max = max(self.tracker.max, self.tracker.now)

        def finish() -> None:
            self.in_flight -= 1
            self.tracker.now -= 1
            if self._transport is None:
                return
            if self.before_answer is not None:
                self.before_answer(frame, answers, source)
            if self.replay_stale:
                for old in self.previous:
                    self.send(old, source)
            for answer in answers:
                self.send(answer, source)
                if self.duplicate:
                    self.send(answer, source)
            self.previous = answers

        if self.delay_s:
            asyncio.get_running_loop().call_later(self.delay_s, finish)
        else:
            finish()

    def requests_with(self, esv: ESV) -> list[Frame]:
        return [f for f in self.requests if f.esv == esv]


class RecordingListener(MulticastListener):
    """Hears the group like a controller would, to check start-up announcements."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.heard: list[tuple[Frame, Address]] = []

    def frame_received(self, frame: Frame, source: Address) -> None:
        self.heard.append((frame, source))


@contextlib.asynccontextmanager
async def lan(
    count: int = 1, *, client_kw: dict[str, Any] | None = None, **device_kw: Any
) -> AsyncIterator[tuple[EchonetClient, list[FaultyDevice], int]]:
    """`count` meter nodes on 127.0.1.1.. sharing one port, a multicast listener on a
    test-chosen group port (interface 127.0.0.1), and a client on 127.0.0.1."""
    group_port = free_udp_port()
    listener = MulticastListener(port=group_port)
    await listener.start()
    devices: list[FaultyDevice] = []
    client = None
    try:
        port = 0
        for i in range(count):
            node = LocalNode([make_meter(power_w=100 * (i + 1))], manufacturer_code=0x000016)
            device = FaultyDevice(
                node, host=f"127.0.1.{i + 1}", port=port, group_port=group_port, **device_kw
            )
            await device.start(announce=False)
            port = device.port  # the same port on every address, as 3610 on a real LAN
            listener.devices.append(device)
            devices.append(device)
        options = {"timeout_s": 0.3, "attempts": 3, "backoff_s": 0.01, **(client_kw or {})}
        client = EchonetClient(
            host="127.0.0.1", port=0, remote_port=port, join_multicast=False, **options
        )
        await client.open()
        yield client, devices, group_port
    finally:
        if client is not None:
            client.close()
        for device in devices:
            device.close()
        listener.close()


# -- discovery -----------------------------------------------------------------------------


def test_discovery_finds_every_node() -> None:
    async def main() -> None:
        async with lan(3) as (client, devices, group_port):
            nodes = await client.discover(timeout_s=0.3, port=group_port)
            assert [n.host for n in nodes] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
            assert {n.port for n in nodes} == {devices[0].port}
            assert all(n.instances == (SMART_METER,) for n in nodes)
            # The multicast Get went to the node profile of every node, once each.
            for device in devices:
                gets = device.requests_with(ESV.GET)
                assert len(gets) == 1 and gets[0].deoj == NODE_PROFILE
            # Unicast discovery of a subset.
            some = await client.discover(timeout_s=0.2, hosts=["127.0.1.2"])
            assert [n.host for n in some] == ["127.0.1.2"]

    run(main())


def test_start_up_announces_the_instance_list() -> None:
    async def main() -> None:
        group_port = free_udp_port()
        ear = RecordingListener(port=group_port)
        await ear.start()
        device = EchonetDeviceEndpoint(
            LocalNode([make_meter()]), host="127.0.1.7", port=0, group_port=group_port
        )
        try:
            await device.start()
            await eventually(lambda: bool(ear.heard))
            frame, source = ear.heard[0]
            assert source == ("127.0.1.7", device.port)
            assert frame.esv == ESV.INF and frame.seoj == NODE_PROFILE
            assert frame.get(0xD5) == bytes([1, 0x02, 0x88, 0x01])
        finally:
            device.close()
            ear.close()

    run(main())


# -- requests ------------------------------------------------------------------------------


def test_get_setc_setget_infreq() -> None:
    async def main() -> None:
        async with lan(2) as (client, devices, _):
            r = await client.get("127.0.1.2", SMART_METER, [0xE7, 0xE0])
            assert r.ok and r.frame.esv == ESV.GET_RES and r.source[0] == "127.0.1.2"
            assert r.values == {0xE7: 200, 0xE0: 12_345}
            assert r.refused == frozenset()

            r = await client.get("127.0.1.1", SMART_METER, [0xE7, 0xC0])
            assert not r.ok and r.frame.esv == ESV.GET_SNA
            assert r.values == {0xE7: 100} and r.refused == {0xC0}

            r = await client.set_c("127.0.1.1", SMART_METER, {0xE5: 3})
            assert r.ok and r.frame.esv == ESV.SET_RES and r.refused == frozenset()
            meter = devices[0].node.objects[SMART_METER]
            assert meter.value(0xE5) == 3

            r = await client.set_c("127.0.1.1", SMART_METER, {0xE5: 4, 0xD3: 10})
            assert r.frame.esv == ESV.SETC_SNA and r.refused == {0xD3}
            assert meter.value(0xE5) == 4 and meter.value(0xD3) == 1

            r = await client.set_get("127.0.1.1", SMART_METER, {0xE5: 1}, [0xE5, 0xEA])
            assert r.ok and r.frame.esv == ESV.SETGET_RES
            assert r.values == {0xE5: 1, 0xEA: EA_VALUE}

            r = await client.set_get("127.0.1.1", SMART_METER, {0xD3: 2}, [0xE5, 0xC0])
            assert r.frame.esv == ESV.SETGET_SNA and r.refused == {0xD3, 0xC0}

            r = await client.inf_req("127.0.1.1", SMART_METER, [0xEA])
            assert r.ok and r.frame.esv == ESV.INF and r.values == {0xEA: EA_VALUE}

            r = await client.inf_req("127.0.1.1", NODE_PROFILE, [0xD5])
            assert r.values == {0xD5: (SMART_METER,)}

            maps = await client.property_maps("127.0.1.1", SMART_METER)
            assert isinstance(maps, PropertyMaps)
            assert maps.set == {0x80, 0x81, 0xE5} and 0xEA in maps.announce
            assert {0xE7, 0xE0, 0xEA, 0x9F} <= maps.get

            client.set_i("127.0.1.2", SMART_METER, {0xE5: 9})
            other = devices[1].node.objects[SMART_METER]
            await eventually(lambda: other.value(0xE5) == 9)
            assert client.counters["timeouts"] == 0

    run(main())


def test_seti_refusal_arrives_as_unmatched() -> None:
    async def main() -> None:
        async with lan(1) as (client, devices, _):
            client.set_i("127.0.1.1", SMART_METER, {0xD3: 5})
            await eventually(lambda: client.counters["stale"] == 1)
            sent = [f for f, _ in devices[0].seen if f.esv == ESV.SETI]
            assert len(sent) == 1

    run(main())


# -- TID matching, retries, timeouts -------------------------------------------------------


def test_duplicate_answers_are_ignored() -> None:
    async def main() -> None:
        async with lan(1, duplicate=True) as (client, _devices, _):
            for _ in range(3):
                r = await client.get("127.0.1.1", SMART_METER, [0xE7])
                assert r.values == {0xE7: 100}
            await eventually(lambda: client.counters["stale"] == 3)

    run(main())


def test_stale_answer_to_an_earlier_tid_is_ignored() -> None:
    async def main() -> None:
        async with lan(1, replay_stale=True) as (client, devices, _):
            reads = iter(range(1, 100))
            devices[0].node.objects[SMART_METER].bind(
                0xE7, get=lambda: next(reads).to_bytes(4, "big")
            )
            got = [
                (await client.get("127.0.1.1", SMART_METER, [0xE7])).values[0xE7] for _ in range(4)
            ]
            assert got == [1, 2, 3, 4]  # never the replayed answer to the previous TID
            tids = [f.tid for f in devices[0].requests]
            assert len(set(tids)) == 4
            await eventually(lambda: client.counters["stale"] == 3)

    run(main())


def test_answer_from_another_host_is_ignored() -> None:
    async def main() -> None:
        async with lan(2) as (client, devices, _):
            impostor = devices[1]

            def forge(request: Frame, answers: list[Frame], to: Address) -> None:
                for answer in answers:  # same TID, another source address
                    impostor.send(answer._replace(props=(Property(0xE7, b"\0\0\0\x01"),)), to)

            devices[0].before_answer = forge
            r = await client.get("127.0.1.1", SMART_METER, [0xE7])
            assert r.values == {0xE7: 100} and r.source[0] == "127.0.1.1"
            assert client.counters["foreign"] == 1

    run(main())


def test_dropped_request_is_retried_with_the_same_tid() -> None:
    async def main() -> None:
        async with lan(1, drop={0}) as (client, devices, _):
            r = await client.get("127.0.1.1", SMART_METER, [0xE7])
            assert r.values == {0xE7: 100}
            first, second = devices[0].requests
            assert first.tid == second.tid and first == second
            assert client.counters["timeouts"] == 1

    run(main())


def test_late_answer_to_the_first_attempt_is_accepted_once() -> None:
    async def main() -> None:
        async with lan(1, delay_s=0.15, client_kw={"timeout_s": 0.1}) as (client, devices, _):
            r = await client.get("127.0.1.1", SMART_METER, [0xE7])
            assert r.values == {0xE7: 100}
            assert client.counters["timeouts"] >= 1
            # The answer to the other attempt arrives after the request settled: stale.
            await eventually(lambda: client.counters["stale"] >= 1)
            assert len(devices[0].requests) >= 2

    run(main())


def test_every_attempt_dropped_is_a_timeout_naming_host_and_epc() -> None:
    async def main() -> None:
        async with lan(1, drop=range(100), client_kw={"timeout_s": 0.05}) as (client, devices, _):
            with pytest.raises(EchonetTimeout) as info:
                await client.get("127.0.1.1", SMART_METER, [0xE7, 0xE8], attempts=3)
            err = info.value
            assert isinstance(err, TimeoutError)
            assert "127.0.1.1" in str(err) and "E7" in str(err) and "E8" in str(err)
            assert "0x028801" in str(err) and "3 attempts" in str(err)
            assert err.host == "127.0.1.1" and err.epcs == (0xE7, 0xE8)
            assert len(devices[0].requests) == 3
            assert client.counters["timeouts"] == 3
            assert not client._pending  # nothing left behind
            # The node stays usable: the next request (with a new TID) is answered.
            devices[0].drop.clear()
            r = await client.get("127.0.1.1", SMART_METER, [0xE7])
            assert r.values == {0xE7: 100}

    run(main())


# -- announcements -------------------------------------------------------------------------


def test_infc_is_acknowledged_and_notified() -> None:
    async def main() -> None:
        async with lan(1) as (client, devices, _):
            device = devices[0]
            edt = e.FixedTimeEnergyCodec().encode(EA_VALUE)
            device.send(
                Frame(0x4242, SMART_METER, CONTROLLER, ESV.INFC, (Property(0xEA, edt),)),
                client.local_address,
            )
            note = await asyncio.wait_for(anext(client.notifications()), 2)
            assert note.frame.esv == ESV.INFC and note.source[0] == "127.0.1.1"
            assert note.values == {0xEA: EA_VALUE}
            await eventually(lambda: any(f.esv == ESV.INFC_RES for f, _ in device.seen))
            ack = next(f for f, _ in device.seen if f.esv == ESV.INFC_RES)
            assert ack.tid == 0x4242 and ack.props == (Property(0xEA),)
            assert ack.seoj == CONTROLLER and ack.deoj == SMART_METER
            # A plain INF is notified too, but not acknowledged.
            device.send(device.node.announcement(SMART_METER, [0xE7], tid=7), client.local_address)
            note = await asyncio.wait_for(anext(client.notifications()), 2)
            assert note.frame.esv == ESV.INF and note.values == {0xE7: 100}
            await asyncio.sleep(0.05)
            assert sum(f.esv == ESV.INFC_RES for f, _ in device.seen) == 1

    run(main())


# -- bad input -----------------------------------------------------------------------------

GARBAGE = [
    b"",
    b"\x00",
    b"\x10\x81",
    b"\x11\x81\x00\x01\x05\xff\x01\x02\x88\x01\x62\x01\xe7\x00",
    b"\x10\x81\x00\x01\x05\xff\x01\x02\x88\x01\x62\x02\xe7\x00",
    b"\x10\x81\x00\x01\x05\xff\x01\x02\x88\x01\x99\x01\xe7\x00",
    b"GET / HTTP/1.1\r\n\r\n",
    bytes(range(256)) * 4,
]


def test_garbage_is_counted_and_the_endpoint_keeps_serving() -> None:
    async def main() -> None:
        async with lan(1) as (client, devices, _):
            device = devices[0]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.bind(("127.0.0.1", 0))
                for datagram in GARBAGE:
                    raw.sendto(datagram, ("127.0.1.1", device.port))
                    raw.sendto(datagram, client.local_address)
                raw.sendto(b"\x10\x82\x00\x01opaque", ("127.0.1.1", device.port))
                await eventually(lambda: device.counters["malformed"] == len(GARBAGE))
                await eventually(lambda: client.counters["malformed"] == len(GARBAGE))
                await eventually(lambda: device.counters["format2"] == 1)
            assert device.malformed_sources == {"127.0.0.1"}
            r = await client.get("127.0.1.1", SMART_METER, [0xE7])
            assert r.values == {0xE7: 100}
            assert device.counters["received"] == 1  # only the good request got through

    run(main())


def test_malformed_edt_in_an_answer_is_reported_not_raised() -> None:
    async def main() -> None:
        async with lan(1) as (client, devices, _):
            meter = devices[0].node.objects[SMART_METER]
            meter.bind(0xE8, get=lambda: b"\x00\x01")  # a broken meter: 2 bytes, not 4
            r = await client.get("127.0.1.1", SMART_METER, [0xE7, 0xE8])
            assert r.values[0xE7] == 100
            assert isinstance(r.values[0xE8], EchonetDecodeError)
            assert r.values[0xE8].epc == 0xE8

    run(main())


# -- one outstanding request per node ------------------------------------------------------


def test_one_outstanding_request_per_node_but_nodes_in_parallel() -> None:
    async def main() -> None:
        tracker = Tracker()
        async with lan(2, delay_s=0.04, tracker=tracker, client_kw={"timeout_s": 1.0}) as (
            client,
            devices,
            _,
        ):
            a, b = devices
            calls = [client.get("127.0.1.1", SMART_METER, [0xE7]) for _ in range(4)]
            calls += [client.get("127.0.1.2", SMART_METER, [0xE7]) for _ in range(4)]
            results = await asyncio.gather(*calls)
            assert [r.values[0xE7] for r in results] == [100] * 4 + [200] * 4
            assert [r.source[0] for r in results] == ["127.0.1.1"] * 4 + ["127.0.1.2"] * 4
            assert len(a.requests) == len(b.requests) == 4
            assert a.max_in_flight == 1 and b.max_in_flight == 1  # never two at one node
            assert tracker.max == 2  # while the two nodes were served at the same time
            assert client.counters["timeouts"] == 0

    run(main())
