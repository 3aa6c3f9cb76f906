"""Times in answers: ISO 8601 in JST, with its offset `+09:00` (docs/api.md).

The database keeps UTC; the product is for Japanese meters and Japan has no daylight
saving, so every JSON answer writes every time in JST, one way. Response models declare
their times `JstDateTime`: pydantic writes it through `astimezone(JST)` in JSON only, so
Python still sees the value as it came. The series written without their models
(`jsonout`) hold times made in JST already (`metering/series.py`). A time put into a
stored JSON `detail` (events, alerts, the audit log) is written by `jst_text`.

Inputs take any offset; one without an offset is JST (each route says so)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import PlainSerializer

from kenshin.jst import JST

__all__ = ["JST", "JstDateTime", "jst_text"]


def _in_jst(at: datetime):  # no return type: the OpenAPI document keeps "date-time"
    return at.astimezone(JST)


JstDateTime = Annotated[datetime, PlainSerializer(_in_jst, when_used="json")]


def jst_text(at: datetime | None) -> str | None:
    """A time as text: ISO 8601 in JST (None stays None)."""
    return None if at is None else at.astimezone(JST).isoformat()
