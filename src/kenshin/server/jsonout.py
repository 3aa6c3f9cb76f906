"""JSON answers written in one step: the handler's plain values (dicts, lists, slotted
dataclasses, dates and times) go straight to pydantic's serializer, in Rust.

Why: FastAPI validates a route's answer into its response model, object by object, then
serializes the models; for a series of hundreds or thousands of points that was most of
the request's Python. The route keeps its `response_model=` (the OpenAPI document says
the same); the handler's values must be what the model would hold, in its field order
(floats as floats, times in the zone shown), so the bytes are the same as before.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

__all__ = ["JsonBytes", "json_response"]


class JsonBytes(Response):
    media_type = "application/json"


def json_response(payload: Any) -> JsonBytes:
    return JsonBytes(to_json(payload))
