"""Dates and times a request may name: 1970 to 2999.

`date` and `datetime` take year 1 to 9999, and the server computes with them: JST
midnight of 0001-01-01 is in year 0 in UTC, the day after 9999-12-31 does not exist, and
either raised OverflowError deep in a series (a 500, or a CSV cut off after its 200).
Nothing the platform stores is older than the Unix epoch or a thousand years ahead, so
anything outside is refused at validation: a 422 naming the parameter."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

__all__ = ["EARLIEST", "LATEST", "ApiAwareDateTime", "ApiDate", "ApiDateTime"]

EARLIEST = date(1970, 1, 1)
LATEST = date(2999, 12, 31)
_RANGE = f"a date from {EARLIEST} to {LATEST}"


def _date(value: date) -> date:
    if not EARLIEST <= value <= LATEST:
        raise ValueError(_RANGE)
    return value


def _datetime(value: datetime) -> datetime:
    # The date as written, and in UTC: 1970-01-01T00:00+09:00 is still 1969 in UTC.
    utc = value.astimezone(UTC) if value.tzinfo and EARLIEST.year < value.year else value
    if not (EARLIEST <= value.date() <= LATEST and EARLIEST <= utc.date() <= LATEST):
        raise ValueError(_RANGE)
    return value


ApiDate = Annotated[date, AfterValidator(_date)]
ApiDateTime = Annotated[datetime, AfterValidator(_datetime)]
ApiAwareDateTime = Annotated[AwareDatetime, AfterValidator(_datetime)]
