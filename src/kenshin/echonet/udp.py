"""ECHONET Lite over UDP (port 3610), asyncio: a thin adapter around the sans-I/O core.

`EchonetClient` is the controller role (discovery, Get/Set/INF_REQ/SetGet with TID
matching, one outstanding request per node, per-request timeout, retries with backoff,
unsolicited INF/INFC as an async iterator). `EchonetDeviceEndpoint` serves a `LocalNode`
and announces its instance list at start. Multicast goes out on the interface given
(loopback by default: nothing leaves this machine unless the caller names a real one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .classes import decode_property, encode_property
from .device import LocalNode
from .edt import PropertyMapCodec
from .errors import EchonetDecodeError, EchonetError
from .frame import (
    CONTROLLER,
    ECHONET_PORT,
    EOJ,
    ESV,
    MULTICAST_GROUP,
    NODE_PROFILE,
    Frame,
    OpaqueFrame,
    Property,
    decode_frame,
)

log = logging.getLogger(__name__)
Address = tuple[str, int]


class EchonetTimeout(EchonetError, TimeoutError):
    """No answer after every attempt; names the node, object and EPCs asked for."""

    def __init__(
        self, host: str, deoj: EOJ, esv: ESV, epcs: Iterable[int], attempts: int, timeout_s: float
    ):
        self.host, self.deoj, self.esv, self.epcs = host, deoj, esv, tuple(epcs)
        epc_text = ",".join(f"{epc:02X}" for epc in self.epcs)
        super().__init__(
            f"no answer from {host} object {deoj} to {esv.name} EPC {epc_text} after "
            f"{attempts} attempts of {timeout_s:g} s; check that the node is up and reachable"
        )


def typed_values(frame: Frame, props: tuple[Property, ...]) -> dict[int, Any]:
    """Decode the EDTs the peer gave; a malformed one is kept as its `EchonetDecodeError`."""
    values: dict[int, Any] = {}
    for prop in props:
        if not prop.edt:
            continue
        try:
            values[prop.epc] = decode_property(frame.seoj.class_code, prop.epc, prop.edt)
        except EchonetDecodeError as err:
            values[prop.epc] = err
    return values


@dataclass(frozen=True)
class Response:
    """An answer matched to our request. `values` holds typed values by EPC; `refused`
    the EPCs the node declined (SNA with PDC 0 for Get, echoed EDT for Set)."""

    frame: Frame
    source: Address
    values: dict[int, Any] = field(default_factory=dict)
    refused: frozenset[int] = frozenset()

    @property
    def ok(self) -> bool:
        return not self.frame.esv.is_error

    @classmethod
    def from_frame(cls, frame: Frame, source: Address, request: Frame) -> Response:
        if frame.esv.carries_two_lists:
            got = frame.props_get
            refused = {p.epc for p in frame.props if p.edt} | {p.epc for p in got if not p.edt}
        elif request.esv in (ESV.SETC, ESV.SETI):
            got, refused = (), {p.epc for p in frame.props if p.edt}
        else:
            got, refused = frame.props, {p.epc for p in frame.props if not p.edt}
        if not frame.esv.is_error:
            refused = set()
        return cls(frame, source, typed_values(frame, got), frozenset(refused))


@dataclass(frozen=True)
class Notification:
    """An announcement (INF or INFC) a node sent without being asked."""

    frame: Frame
    source: Address
    values: dict[int, Any]


@dataclass(frozen=True)
class DiscoveredNode:
    host: str
    port: int
    instances: tuple[EOJ, ...]


@dataclass(frozen=True)
class PropertyMaps:
    announce: frozenset[int]
    set: frozenset[int]
    get: frozenset[int]


def _open_udp_socket(
    host: str, port: int, multicast_interface: str | None, join_group: bool, *, shared: bool = True
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if shared:  # a controller may share 3610 with others; a device owns its address
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setblocking(False)
    # A multicast discovery is answered by every node at once: room for a thousand answers
    # (the kernel caps this at net.core.rmem_max; asking more does no harm).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, port))
    if multicast_interface is not None:
        iface = socket.inet_aton(multicast_interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if join_group:
            mreq = struct.pack("4s4s", socket.inet_aton(MULTICAST_GROUP), iface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    return sock


class _Datagrams(asyncio.DatagramProtocol):
    """Decodes datagrams and hands frames to its owner; bad input is counted, logged once
    per source, and never stops the loop."""

    def __init__(self, owner: _Endpoint):
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            frame = decode_frame(data)
        except EchonetDecodeError as err:
            self.owner.counters["malformed"] += 1
            if addr[0] not in self.owner.malformed_sources:
                self.owner.malformed_sources.add(addr[0])
                log.warning("malformed ECHONET Lite frame from %s: %s", addr[0], err)
            return
        if isinstance(frame, OpaqueFrame):
            self.owner.counters["format2"] += 1
            return
        try:
            self.owner.frame_received(frame, (addr[0], addr[1]))
        except Exception:  # one bad frame never stops the endpoint
            self.owner.counters["handler_errors"] += 1
            log.exception("error handling a frame from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        self.owner.counters["socket_errors"] += 1
        log.debug("UDP error: %s", exc)


class _Endpoint:
    """What both roles share: a socket, a transport, counters."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.malformed_sources: set[str] = set()
        self._transport: asyncio.DatagramTransport | None = None

    async def _open(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), sock=sock
        )

    @property
    def local_address(self) -> Address:
        assert self._transport is not None, "endpoint not open"
        return self._transport.get_extra_info("sockname")[:2]

    def send(self, frame: Frame, to: Address) -> None:
        if self._transport is None:
            raise EchonetError("endpoint is closed")
        self._transport.sendto(frame.to_bytes(), to)
        self.counters["sent"] += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def frame_received(self, frame: Frame, source: Address) -> None:
        raise NotImplementedError


@dataclass
class _Pending:
    request: Frame
    host: str | None  # None: any host may answer (discovery)
    future: asyncio.Future[tuple[Frame, Address]] | None = None
    collected: list[tuple[Frame, Address]] | None = None


class EchonetClient(_Endpoint):
    """Controller role. Use as `async with EchonetClient() as client:`."""

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = ECHONET_PORT,
        remote_port: int = ECHONET_PORT,
        multicast_interface: str = "127.0.0.1",
        join_multicast: bool = True,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        seoj: EOJ = CONTROLLER,
    ):
        super().__init__()
        self.host, self.port, self.remote_port = host, port, remote_port
        self.multicast_interface = multicast_interface
        self.join_multicast = join_multicast
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s
        self.seoj = seoj
        self._next_tid = 1
        self._pending: dict[int, _Pending] = {}
        self._node_locks: dict[str, asyncio.Lock] = {}
        self._notifications: asyncio.Queue[Notification] = asyncio.Queue(maxsize=10_000)

    async def __aenter__(self) -> EchonetClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def open(self) -> None:
        await self._open(
            _open_udp_socket(self.host, self.port, self.multicast_interface, self.join_multicast)
        )

    def _allocate_tid(self) -> int:
        while True:
            tid = self._next_tid
            self._next_tid = tid % 0xFFFF + 1
            if tid not in self._pending:
                return tid

    # -- receiving -------------------------------------------------------------------------

    def frame_received(self, frame: Frame, source: Address) -> None:
        if frame.esv in (ESV.INF, ESV.INFC):
            pending = self._pending.get(frame.tid)
            if frame.esv == ESV.INF and pending and pending.request.esv == ESV.INF_REQ:
                self._resolve(pending, frame, source)
                return
            if frame.esv == ESV.INFC:  # the sender wants to know we heard it
                self.send(Frame(frame.tid, frame.deoj, frame.seoj, ESV.INFC_RES,
                                tuple(Property(p.epc) for p in frame.props)), source)  # fmt: skip
            self._notify(Notification(frame, source, typed_values(frame, frame.props)))
            return
        if frame.esv.is_request:
            self.counters["requests_ignored"] += 1
            return
        pending = self._pending.get(frame.tid)
        if pending is None:
            self.counters["stale"] += 1  # a late or duplicated answer: TID already settled
            return
        self._resolve(pending, frame, source)

    def _resolve(self, pending: _Pending, frame: Frame, source: Address) -> None:
        if pending.host is not None and source[0] != pending.host:
            self.counters["foreign"] += 1
            return
        if pending.collected is not None:
            pending.collected.append((frame, source))
        elif pending.future is not None and not pending.future.done():
            pending.future.set_result((frame, source))
        else:
            self.counters["stale"] += 1

    def _notify(self, note: Notification) -> None:
        try:
            self._notifications.put_nowait(note)
        except asyncio.QueueFull:
            self.counters["notifications_dropped"] += 1

    async def notifications(self) -> AsyncIterator[Notification]:
        """Unsolicited INF/INFC frames, in arrival order."""
        while True:
            yield await self._notifications.get()

    # -- requests --------------------------------------------------------------------------

    async def request(
        self,
        host: str,
        deoj: EOJ,
        esv: ESV,
        props: Iterable[Property],
        props_get: Iterable[Property] = (),
        *,
        timeout_s: float | None = None,
        attempts: int | None = None,
        port: int | None = None,
    ) -> Response:
        """Send one request and wait for its answer, one request at a time per node."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        attempts = self.attempts if attempts is None else attempts
        to = (host, self.remote_port if port is None else port)
        lock = self._node_locks.setdefault(host, asyncio.Lock())
        async with lock:
            tid = self._allocate_tid()
            frame = Frame(tid, self.seoj, deoj, esv, tuple(props), tuple(props_get))
            pending = _Pending(frame, host, asyncio.get_running_loop().create_future())
            self._pending[tid] = pending
            try:
                for attempt in range(attempts):
                    self.send(frame, to)  # the same TID: a late answer to a retry still counts
                    try:
                        answer, source = await asyncio.wait_for(
                            asyncio.shield(pending.future), timeout_s
                        )
                    except TimeoutError:
                        self.counters["timeouts"] += 1
                        if attempt + 1 < attempts:
                            await asyncio.sleep(self.backoff_s * 2**attempt)
                        continue
                    return Response.from_frame(answer, source, frame)
            finally:
                del self._pending[tid]
            epcs = [p.epc for p in (*frame.props, *frame.props_get)]
            raise EchonetTimeout(host, deoj, esv, epcs, attempts, timeout_s)

    async def get(self, host: str, deoj: EOJ, epcs: Iterable[int], **kw: Any) -> Response:
        return await self.request(host, deoj, ESV.GET, [Property(epc) for epc in epcs], **kw)

    async def inf_req(self, host: str, deoj: EOJ, epcs: Iterable[int], **kw: Any) -> Response:
        return await self.request(host, deoj, ESV.INF_REQ, [Property(epc) for epc in epcs], **kw)

    async def set_c(self, host: str, deoj: EOJ, values: Mapping[int, Any], **kw: Any) -> Response:
        return await self.request(host, deoj, ESV.SETC, _set_props(deoj, values), **kw)

    async def set_get(
        self, host: str, deoj: EOJ, values: Mapping[int, Any], epcs: Iterable[int], **kw: Any
    ) -> Response:
        return await self.request(
            host, deoj, ESV.SETGET, _set_props(deoj, values), [Property(epc) for epc in epcs], **kw
        )

    def set_i(
        self, host: str, deoj: EOJ, values: Mapping[int, Any], port: int | None = None
    ) -> int:
        """Fire-and-forget Set (a refusal would come back as SetI_SNA, seen as stale)."""
        tid = self._allocate_tid()
        frame = Frame(tid, self.seoj, deoj, ESV.SETI, tuple(_set_props(deoj, values)))
        self.send(frame, (host, self.remote_port if port is None else port))
        return tid

    async def property_maps(self, host: str, deoj: EOJ, **kw: Any) -> PropertyMaps:
        """The node's own statement of what it announces, accepts and answers."""
        codec = PropertyMapCodec()
        maps = {}
        for epc in (0x9D, 0x9E, 0x9F):  # one at a time: some nodes refuse several at once
            answer = await self.get(host, deoj, [epc], **kw)
            edt = answer.frame.get(epc)
            maps[epc] = codec.decode(edt) if edt else frozenset()
        return PropertyMaps(maps[0x9D], maps[0x9E], maps[0x9F])

    async def discover(
        self, *, timeout_s: float = 2.0, hosts: Iterable[str] | None = None, port: int | None = None
    ) -> list[DiscoveredNode]:
        """Ask every node (multicast) or the given hosts (unicast) for its instance list
        (0xD6) and collect the answers that arrive within `timeout_s`."""
        tid = self._allocate_tid()
        frame = Frame(tid, self.seoj, NODE_PROFILE, ESV.GET, (Property(0xD6),))
        pending = _Pending(frame, None, collected=[])
        self._pending[tid] = pending
        remote_port = self.remote_port if port is None else port
        try:
            targets = [MULTICAST_GROUP] if hosts is None else list(hosts)
            for target in targets:
                self.send(frame, (target, remote_port))
            await asyncio.sleep(timeout_s)
        finally:
            del self._pending[tid]
        found: dict[Address, DiscoveredNode] = {}
        for answer, source in pending.collected or []:
            instances = typed_values(answer, answer.props).get(0xD6)
            if isinstance(instances, tuple):
                found[source] = DiscoveredNode(source[0], source[1], instances)
        return sorted(found.values(), key=lambda n: (socket.inet_aton(n.host), n.port))


def _set_props(deoj: EOJ, values: Mapping[int, Any]) -> list[Property]:
    return [Property(epc, encode_property(deoj.class_code, epc, v)) for epc, v in values.items()]


class EchonetDeviceEndpoint(_Endpoint):
    """Device role: serves a `LocalNode` on (host, port). Multicast requests reach it
    through a `MulticastListener` shared by all device endpoints of a process."""

    def __init__(
        self,
        node: LocalNode,
        *,
        host: str = "127.0.0.1",
        port: int = ECHONET_PORT,
        multicast_interface: str = "127.0.0.1",
        group_port: int | None = None,
    ):
        super().__init__()
        self.node = node
        self.host, self.port = host, port
        self.multicast_interface = multicast_interface
        self.group_port = port if group_port is None else group_port
        self._next_tid = 1

    def next_tid(self) -> int:
        tid = self._next_tid
        self._next_tid = tid % 0xFFFF + 1
        return tid

    async def start(self, *, announce: bool = True) -> None:
        sock = _open_udp_socket(self.host, self.port, self.multicast_interface, False, shared=False)
        await self._open(sock)
        self.port = self.local_address[1]
        if announce:
            self.send_to_group(self.node.instance_list_announcement(self.next_tid()))

    def send_to_group(self, frame: Frame) -> None:
        self.send(frame, (MULTICAST_GROUP, self.group_port))

    def frame_received(self, frame: Frame, source: Address) -> None:
        self.counters["received"] += 1
        self.respond(frame, source)

    def respond(self, frame: Frame, source: Address) -> None:
        """Answer to the sender's address and port (override to inject faults)."""
        for answer in self.node.handle(frame):
            self.send(answer, source)


class MulticastListener(_Endpoint):
    """Receives the ECHONET Lite group (224.0.23.0) once and lets every device endpoint of
    the process answer, each from its own address, as separate nodes on a LAN would."""

    def __init__(self, *, port: int = ECHONET_PORT, interface: str = "127.0.0.1"):
        super().__init__()
        self.port, self.interface = port, interface
        self.devices: list[EchonetDeviceEndpoint] = []

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind((MULTICAST_GROUP, self.port))  # only group traffic, not unicast to the port
        mreq = struct.pack("4s4s", socket.inet_aton(MULTICAST_GROUP),
                           socket.inet_aton(self.interface))  # fmt: skip
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        await self._open(sock)

    def frame_received(self, frame: Frame, source: Address) -> None:
        for device in self.devices:
            if device._transport is None:
                continue  # not open yet, or closed already: it cannot answer
            if (source[0], source[1]) != device.local_address:  # not our own announcement
                device.frame_received(frame, source)
