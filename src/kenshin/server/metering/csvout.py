"""CSV downloads: UTF-8 with a BOM (so Excel shows Japanese text right), a header row,
CRLF line ends (RFC 4180, as Excel writes), times in JST, streamed in chunks so a
tenant's month never sits in memory whole.

The one convention of every series: `format=csv` asks for CSV, the default is JSON.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from fastapi.responses import StreamingResponse

from ..times import jst_text

__all__ = [
    "BOM",
    "CSV_RESPONSE",
    "CsvStream",
    "csv_chunks",
    "csv_response",
    "jst_text",
    "safe_cell",
]

BOM = "\ufeff"
ROWS_PER_CHUNK = 500  # ~40 KB a chunk: a send that is worth it, a buffer that stays small
# For a route's `responses=`: its 200 may also be CSV (format=csv).
CSV_RESPONSE = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}


class CsvStream(StreamingResponse):
    """A streamed CSV; as a route's `response_class`, OpenAPI lists text/csv for it."""

    media_type = "text/csv"  # Starlette adds "; charset=utf-8"


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): text beginning
# with one of these (the full-width forms too: Japanese Excel takes ＝ for =).
_FORMULA_START = tuple("=+-@\t\r") + tuple("＝＋－＠")


def safe_cell(value: object) -> object:
    """`value` as a CSV cell that cannot be a formula: text beginning with = + - @, a tab
    or a CR gets a leading single quote (shown as text, as OWASP recommends). Only text:
    numbers are written from numbers (a negative one stays a number)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_chunks(
    header: Sequence[str], rows: Iterable[Sequence[object]], rows_per_chunk: int = ROWS_PER_CHUNK
) -> Iterator[bytes]:
    """The CSV's bytes, `rows_per_chunk` rows at a time: `rows` is read only as far as
    the chunk being written, so a lazy source stays lazy. Values are written as they are
    (None: an empty cell, never a zero) but for text that a spreadsheet would take for a
    formula (`safe_cell`); times go through `jst_text` first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write(BOM)
    writer.writerow(header)
    rows = iter(rows)
    while chunk := list(islice(rows, rows_per_chunk)):
        writer.writerows([safe_cell(v) for v in row] for row in chunk)
        yield out.getvalue().encode("utf-8")
        out.seek(0)
        out.truncate()
    if out.tell():  # the header of an empty CSV
        yield out.getvalue().encode("utf-8")


def csv_response(
    filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> CsvStream:
    """The CSV as a streamed response. Its first chunk (header and first rows) is made
    here, before anything is sent, so whatever the rows' source refuses (a range it cannot
    compute, a query that fails) is an error answer, not a 200 cut short. An error past
    the first chunk propagates and the HTTP server aborts the connection (no final chunk):
    the client sees a broken download, never a complete-looking truncated file."""
    chunks = csv_chunks(header, rows)
    first = next(chunks)
    return CsvStream(
        itertools.chain((first,), chunks),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
