"""CSV downloads: Excel-ready bytes (BOM, header, CRLF, quoting, JST times), produced
lazily, and the whole tenant's slot CSV streamed by the real server over a real socket
with memory that stays far below the size of what it sends."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from kenshin.jst import JST
from kenshin.server import accounts
from kenshin.server import schema as s
from kenshin.server.app import create_app
from kenshin.server.metering.csvout import BOM, csv_chunks, jst_text
from kenshin.wire import FixedTimeValue
from tests.server.conftest import bearer, udp_meter
from tests.web.conftest import ServerThread

from .test_series_api import send

HEADER = ["meter_id", "service_code", "customer_id", "slot_start_jst", "direction", "status", "wh"]


def _parse(data: bytes) -> list[list[str]]:
    text = data.decode("utf-8")
    assert text.startswith(BOM) and text.count(BOM) == 1
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def test_bom_header_crlf_and_quoting_round_trip():
    rows = [
        [1, "顧客-001", "東京都港区, 1-2-3", None, 0],
        [2, 'say "はい"', "two\nlines", "", -5],
    ]
    data = b"".join(csv_chunks(["id", "名前", "住所", "note", "wh"], rows))
    assert data.startswith(b"\xef\xbb\xbfid,")  # the UTF-8 BOM, then the header
    assert data.count(b"\r\n") == 3  # records end in CRLF; a value keeps its own LF
    assert _parse(data) == [
        ["id", "名前", "住所", "note", "wh"],
        ["1", "顧客-001", "東京都港区, 1-2-3", "", "0"],  # None: an empty cell, not "None"
        ["2", 'say "はい"', "two\nlines", "", "-5"],
    ]


def test_times_are_jst():
    assert jst_text(datetime(2026, 3, 30, 15, 0, tzinfo=UTC)) == "2026-03-31T00:00:00+09:00"
    assert jst_text(None) is None


def test_rows_are_read_only_as_far_as_the_chunk_being_written():
    pulled = 0

    def source():
        nonlocal pulled
        for n in range(10):
            pulled += 1
            yield [n]

    chunks = csv_chunks(["n"], source(), rows_per_chunk=4)
    first = next(chunks)
    assert pulled == 4 and _parse(first) == [["n"], ["0"], ["1"], ["2"], ["3"]]
    rest = list(chunks)
    assert pulled == 10 and [c.count(b"\r\n") for c in rest] == [4, 2]
    assert b"".join(csv_chunks(["n"], [])) == b"\xef\xbb\xbfn\r\n"  # header alone


METERS = 60  # x 31 days x 48 slots: 89,280 rows of CSV


@pytest.fixture
def server(settings):
    """The real server on a port, on the test's database (its own app and engine)."""
    with ServerThread(create_app(settings)) as running:
        yield running


def test_the_whole_tenants_month_streams_through_a_real_server(server, engine, world, fleet):
    first, last = date(2026, 3, 1), date(2026, 3, 31)
    start = datetime(2026, 3, 1, tzinfo=JST)
    customer = '顧客 "東京", 001'  # Japanese, a comma and quotes: quoted, intact
    with engine.begin() as conn:
        conn.execute(
            update(s.sites).where(s.sites.c.id == fleet["site"].id).values(customer_id=customer)
        )
        _, key = accounts.insert_api_key(conn, world.tenant_a, "csv", "viewer")
    meters = [udp_meter(engine, world, fleet) for _ in range(METERS)]
    fed = meters[0].id  # the whole month but one boundary, through the real ingest
    send(
        engine, fed,
        (FixedTimeValue(int((start + i * timedelta(minutes=30)).timestamp()), 1000 + 7 * i)
         for i in range(31 * 48 + 1) if i != 100),
    )  # fmt: skip

    url, params = "/api/v1/energy/meters.csv", {"from": str(first), "to": str(last)}
    size, head, using = 0, bytearray(), []  # using: memory in use after each chunk
    with httpx.Client(base_url=server.url, headers=bearer(key), timeout=120) as http:
        tracemalloc.start()
        try:
            # One day first: what the first request imports and caches is not the stream's.
            assert http.get(url, params={"from": str(first), "to": str(first)}).is_success
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            with http.stream("GET", url, params=params) as answer:
                assert answer.status_code == 200, answer.read()
                assert answer.headers["content-type"] == "text/csv; charset=utf-8"
                assert answer.headers["transfer-encoding"] == "chunked"
                assert "content-length" not in answer.headers
                assert 'filename="tenant-' in answer.headers["content-disposition"]
                for chunk in answer.iter_raw():
                    size += len(chunk)
                    if len(head) < 300_000:  # enough for the first two meters
                        head += chunk
                    using.append(tracemalloc.get_traced_memory()[0] - before)
            grew = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()

    rows = 31 * 48 * METERS
    head = _parse(bytes(head[: head.rindex(b"\r\n") + 2]))  # whole lines only
    assert head[0] == HEADER
    mine = [r for r in head[1:] if r[0] == str(fed)]
    assert len(mine) == 31 * 48
    assert mine[0] == [str(fed), "pss12345678", customer, "2026-03-01T00:00:00+09:00",
                       "normal", "measured", "7"]  # fmt: skip
    assert [r[3] for r in mine if r[5] == "missing"] == [
        "2026-03-03T01:30:00+09:00", "2026-03-03T02:00:00+09:00"]  # fmt: skip
    assert all(r[6] == "" for r in mine if r[5] == "missing")
    silent = [r for r in head[1:] if r[0] == str(meters[1].id)]  # no data: every slot listed
    assert silent and all(r[5] == "missing" and r[6] == "" for r in silent)
    assert size > 80 * rows  # about 6.5 MB went out ...
    assert len(using) > 100  # ... in many pieces ...
    # ... never all of it in memory at once: what the stream holds does not grow with what
    # went out (the last half holds no more than the first quarter did).
    quarter = len(using) // 4
    assert max(using[2 * quarter :]) < max(using[:quarter]) + 256_000, using[::quarter]
    assert grew < size / 2, (grew, size)
    print(f"tenant CSV: {rows:,} rows, {size / 1e6:.1f} MB in {len(using)} chunks; "
          f"memory peak {grew / 1e6:.2f} MB above the start")  # fmt: skip
