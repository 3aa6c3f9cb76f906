"""CSV downloads: UTF-8 with a BOM (so Excel shows Japanese text right), a header row,
CRLF line ends (RFC 4180, as Excel writes), times in JST, streamed in chunks so a
tenant's month never sits in memory whole.

The one convention of every series: `format=csv` asks for CSV, the default is JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice

from fastapi.responses import StreamingResponse

from kenshin.echonet.edt import JST

__all__ = ["BOM", "CSV_RESPONSE", "CsvStream", "csv_chunks", "csv_response", "jst_text"]

BOM = "\ufeff"
ROWS_PER_CHUNK = 500  # ~40 KB a chunk: a send that is worth it, a buffer that stays small
# For a route's `responses=`: its 200 may also be CSV (format=csv).
CSV_RESPONSE = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}


class CsvStream(StreamingResponse):
    """A streamed CSV; as a route's `response_class`, OpenAPI lists text/csv for it."""

    media_type = "text/csv"  # Starlette adds "; charset=utf-8"


def jst_text(at: datetime | None) -> str | None:
    """A time as CSV shows it: ISO 8601 in JST (None stays an empty cell)."""
    return None if at is None else at.astimezone(JST).isoformat()


def csv_chunks(
    header: Sequence[str], rows: Iterable[Sequence[object]], rows_per_chunk: int = ROWS_PER_CHUNK
) -> Iterator[bytes]:
    """The CSV's bytes, `rows_per_chunk` rows at a time: `rows` is read only as far as
    the chunk being written, so a lazy source stays lazy. Values are written as they are
    (None: an empty cell, never a zero); times go through `jst_text` first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write(BOM)
    writer.writerow(header)
    rows = iter(rows)
    while chunk := list(islice(rows, rows_per_chunk)):
        writer.writerows(chunk)
        yield out.getvalue().encode("utf-8")
        out.seek(0)
        out.truncate()
    if out.tell():  # the header of an empty CSV
        yield out.getvalue().encode("utf-8")


def csv_response(
    filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> CsvStream:
    return CsvStream(
        csv_chunks(header, rows),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
