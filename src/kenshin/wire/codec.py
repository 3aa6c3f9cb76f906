"""Messages to bytes and back: compact canonical CBOR, every field checked both ways.

The public face of the codec: `encode`, `decode`, their publish forms and `to_json`.
The work is in modules beside it, each with its own reason to change:

- `checks.py`: the limits and ranges, and what a valid message is (both directions);
- `layout.py`: where each field goes in the message's CBOR array;
- `columns.py`: a readings batch's columns, coded on integers and bytes;
- `versions.py`: which protocol version is written and how older ones are read.

`docs/wire.md` has the layout, the limits and a worked byte count. `decode` raises only
`WireError` subclasses, whatever the bytes: the fuzz test holds it to that. The names
other modules import from here (the limits, `WIRE_VERSION`, `LINK_STATE_CODES`) stay here.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cbor2

from kenshin.jst import JST  # to_json's times

from .checks import (
    CBOR_MAX_DEPTH,
    COEFFICIENT_MAX,
    CURRENT_DA_MAX,
    CURRENT_DA_MIN,
    DECODING,
    ENCODING,
    LINK_STATE_CODES,
    LQI_MAX,
    MAX_COUNTERS,
    MAX_DR_DEVICES,
    MAX_DR_SETS,
    MAX_DR_SLOTS,
    MAX_EDT_BYTES,
    MAX_FIXED_VALUES,
    MAX_INSTANT_SAMPLES,
    MAX_KEY_LEN,
    MAX_MAP_DEPTH,
    MAX_MAP_ITEMS,
    MAX_NAME_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_REASON_LEN,
    MAX_STEP_S,
    MAX_TEXT_LEN,
    MAX_TIME_S,
    MIN_TIME_S,
    POWER_W_MAX,
    POWER_W_MIN,
    RAW_MAX,
    SLOT_S,
    UINT_MAX,
    kind,
)
from .errors import WireDecodeError, WireEncodeError, WireLimitError
from .layout import CODE_BY_CLASS, SPECS
from .messages import MESSAGES_FOR_KIND, Message, ValueSource, mask_secrets
from .topics import parse_topic, topic_for
from .versions import WIRE_VERSION, check_version

__all__ = [
    "COEFFICIENT_MAX",
    "CURRENT_DA_MAX",
    "CURRENT_DA_MIN",
    "JST",
    "LINK_STATE_CODES",
    "LQI_MAX",
    "MAX_COUNTERS",
    "MAX_DR_DEVICES",
    "MAX_DR_SETS",
    "MAX_DR_SLOTS",
    "MAX_EDT_BYTES",
    "MAX_FIXED_VALUES",
    "MAX_INSTANT_SAMPLES",
    "MAX_KEY_LEN",
    "MAX_MAP_DEPTH",
    "MAX_MAP_ITEMS",
    "MAX_NAME_LEN",
    "MAX_PAYLOAD_BYTES",
    "MAX_REASON_LEN",
    "MAX_STEP_S",
    "MAX_TEXT_LEN",
    "MAX_TIME_S",
    "MIN_TIME_S",
    "POWER_W_MAX",
    "POWER_W_MIN",
    "RAW_MAX",
    "SLOT_S",
    "UINT_MAX",
    "WIRE_VERSION",
    "decode",
    "decode_publish",
    "encode",
    "encode_publish",
    "to_json",
]


# -- the public API --------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """The payload of `message`: canonical CBOR. Raises `WireEncodeError` for a field of
    the wrong type or out of range, `WireLimitError` for anything over a limit."""
    code = CODE_BY_CLASS.get(type(message))
    if code is None:
        raise WireEncodeError(f"not a wire message: {kind(message)}")
    spec = SPECS[code]
    spec.check(message, ENCODING)
    payload = cbor2.dumps([code, WIRE_VERSION, *spec.to_wire(message)], canonical=True)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireLimitError(
            f"payload of {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}", where=spec.cls.__name__
        )
    return payload


def decode(payload: bytes, *, expect: type | tuple[type, ...] | None = None) -> Message:
    """The message in `payload`, checked field by field. With `expect` (a message class
    or a tuple of them, usually the topic's), any other type is refused. Raises only `WireError`:
    `WireLimitError` over a limit, `WireVersionError` for a newer protocol version,
    `WireDecodeError` for everything else."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise WireDecodeError(f"a payload is bytes, got {kind(payload)}")
    size = len(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise WireLimitError(f"payload of {size} bytes, at most {MAX_PAYLOAD_BYTES}")
    if not size:
        raise WireDecodeError("empty payload")
    stream = io.BytesIO(payload)
    try:
        decoder = cbor2.CBORDecoder(
            stream, max_depth=CBOR_MAX_DEPTH, allow_duplicate_keys=False, str_errors="strict"
        )
        body = decoder.decode()
    except Exception as err:  # cbor2's own errors, or whatever its tag decoders raise
        reason = str(err)[:120] or type(err).__name__
        raise WireDecodeError(f"not well-formed CBOR: {reason}", where="payload") from None
    if stream.tell() != size:
        raise WireDecodeError(
            f"{size - stream.tell()} bytes after the message", where=f"offset {stream.tell()}"
        )
    if type(body) is not list or len(body) < 2:
        raise WireDecodeError("a message is an array [type, version, fields...]", where="envelope")
    code, version = body[0], check_version(body[1])
    spec = SPECS.get(code) if type(code) is int else None
    if spec is None:
        raise WireDecodeError("unknown message type", where="type")
    name = spec.cls.__name__
    allowed = expect if isinstance(expect, tuple) else (expect,)
    if expect is not None and spec.cls not in allowed:
        wanted = " or ".join(getattr(e, "__name__", repr(e)) for e in allowed)
        raise WireDecodeError(f"expected {wanted}, got {name}", where="type")
    fields = body[2 : 2 + spec.field_count]
    if len(fields) < spec.field_count:
        raise WireDecodeError(f"{len(fields)} fields, need {spec.field_count}", where=name)
    message = spec.from_wire(fields, version)
    spec.check(message, DECODING)
    return message


def encode_publish(message: Message, gateway_id: str) -> tuple[str, bytes]:
    """(topic, payload) for `message` from or to one gateway."""
    return topic_for(message.KIND, gateway_id), encode(message)


def decode_publish(topic: str, payload: bytes) -> tuple[str, Message]:
    """(gateway id, message) of a received PUBLISH: the topic must be one of ours and the
    message of a type that topic carries (`MESSAGES_FOR_KIND`). Raises only `WireError`."""
    kind, gateway_id = parse_topic(topic)
    return gateway_id, decode(payload, expect=MESSAGES_FOR_KIND[kind])


# -- debugging -------------------------------------------------------------------------------

_TIME_FIELDS = frozenset({"at_s", "slot_start_s", "last_good_read_s", "expires_s", "issued_s",
                          "start_s", "end_s", "opt_out_deadline_s"})  # fmt: skip
_UNIT_NAMES = {
    0x00: "1 kWh", 0x01: "0.1 kWh", 0x02: "0.01 kWh", 0x03: "0.001 kWh", 0x04: "0.0001 kWh",
    0x0A: "10 kWh", 0x0B: "100 kWh", 0x0C: "1000 kWh", 0x0D: "10000 kWh",
}  # fmt: skip


def to_json(message: Message, *, indent: int | None = 2) -> str:
    """`message` as JSON for people: field names, ISO times in JST, enum names, and every
    secret masked. Not a wire format: nothing parses it back."""
    body = {"type": type(message).__name__, "wire_version": WIRE_VERSION, **_jsonable(message)}
    return json.dumps(body, indent=indent, ensure_ascii=False, default=repr)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name in _TIME_FIELDS and item is not None:
                out[f.name.removesuffix("_s")] = _iso(item)
            elif f.name == "unit_code":
                out[f.name] = _jsonable(item)
                out["unit"] = _UNIT_NAMES.get(item, repr(item))
            else:
                out[f.name] = _jsonable(item)
        return out
    if isinstance(value, ValueSource):
        return value.name.lower()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in mask_secrets(value).items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes):  # a DrSet's EDT
        return value.hex()
    return value


def _iso(epoch_s: Any) -> Any:
    try:
        return datetime.fromtimestamp(epoch_s, JST).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return epoch_s
