"""MQTT 3.1.1 packets for the benches' lean gateways: bytes built once, written on plain
sockets (a full client a gateway would cost the machine the server is measured on)."""

from __future__ import annotations

import asyncio
import struct


def packet(first_byte: int, body: bytes) -> bytes:
    """A control packet: type and flags, remaining length, body."""
    length, rest = bytearray(), len(body)
    while True:
        rest, digit = divmod(rest, 128)
        length.append(digit | (0x80 if rest else 0))
        if not rest:
            return bytes([first_byte]) + bytes(length) + body


def string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(
    client_id: str, username: str, password: str, *, clean: bool = True, keepalive: int = 600
) -> bytes:
    flags = 0x80 | 0x40 | (0x02 if clean else 0)  # user name, password, clean session
    body = string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return packet(0x10, body + b"".join(map(string, (client_id, username, password))))


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """QoS 1."""
    return packet(0x32, string(topic) + struct.pack("!H", packet_id) + payload)


def subscribe_packet(packet_id: int, filters: list[str], qos: int = 1) -> bytes:
    """Each filter at `qos`."""
    body = struct.pack("!H", packet_id) + b"".join(string(f) + bytes([qos]) for f in filters)
    return packet(0x82, body)


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next control packet from `reader`: its first byte and its body."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)
