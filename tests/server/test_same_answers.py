"""The series and list answers stay the same, byte for byte, while their code is made
faster (issue 21): the query bench's queries, and the variants beside them, through a real
uvicorn server on a small fixed PostgreSQL database (bench/queries.py's builder, its clock
pinned), each answer's SHA-256 against the one the code gave before the work began.

A change that means to change an answer updates its digest here, saying why."""

from __future__ import annotations

import base64
import hashlib
import io
from contextlib import redirect_stderr
from dataclasses import fields

import httpx
import pytest

from bench import queries
from kenshin.server import accounts
from kenshin.server.app import create_app
from kenshin.server.metering import api, peaks, series
from kenshin.server.settings import Settings

from .conftest import PostgresDatabases, bearer, serving

METERS, DAYS = 80, 3  # 80: "港区77" finds a site
METER = METERS // 2
DAY = queries.TODAY.date()
# Beside the bench's own: other periods and formats, a page after the first, peaks,
# bucketed power, a refusal.
VARIANTS = [
    f"/api/v1/meters/{METER}/energy?period=slot&from={DAY}&to={DAY}",
    f"/api/v1/meters/{METER}/energy?period=hour&from={DAY}&to={DAY}",
    f"/api/v1/meters/{METER}/energy?period=month&from={DAY}&to={DAY}",
    f"/api/v1/meters/{METER}/slots?day={DAY}",
    f"/api/v1/energy?period=day&from={DAY}&to={DAY}&direction=reverse",
    f"/api/v1/energy?period=slot&from={DAY}&to={DAY}&format=csv",
    f"/api/v1/meters/{METER}/peaks?from={DAY}&to={DAY}",
    f"/api/v1/meters/{METER}/power?start={DAY}T00:00:00&end={DAY}T12:00:00&max_points=100",
    "/api/v1/sites?limit=7&sort=-address",
    f"/api/v1/meters/{METERS + 1}/energy?period=day&from={DAY}&to={DAY}",  # 404
]
# (status and media type, the body's SHA-256, its first half): commit 9e303e4's answers, the
# same as before the work on issue 21 began (7b370d5). Changed on purpose since (issue 17):
# /sites' `power_at` in JST, +09:00, not UTC `Z` (checked: the same bytes with it put back);
# /peaks a page, `{"items": [...], "next_cursor": null}`, not a bare array.
GOLDEN = {
    "/api/v1/energy?period=slot&from=2026-11-24&to=2026-11-24":
        ("200 application/json", "f23af834870764a5e94678204b62385d"),
    "/api/v1/meters/40/energy?period=day&from=2026-11-22&to=2026-11-24":
        ("200 application/json", "69c5b23621585e8f28e163475dfedb0e"),
    "/api/v1/meters/40/energy?period=day&from=2025-11-25&to=2026-11-24":
        ("200 application/json", "111d677e333f2ae8ec60fae23b42c6ce"),
    "/api/v1/sites?limit=50":
        ("200 application/json", "c8b2bf0e603465dca8a199345a5281a7"),
    "/api/v1/sites?limit=50 next":
        ("200 application/json", "b36482c5f69ba829a22333e07865ed72"),
    "/api/v1/sites?limit=50&q=%E6%B8%AF%E5%8C%BA77":
        ("200 application/json", "91286977eec30bcd77f9449e4f495904"),
    "/api/v1/meters/40/power?start=2026-11-24T00%3A00%3A00&end=2026-11-25T00%3A00%3A00&max_points=1440":
        ("200 application/json", "f6a8561e7f787e195e79677e21725242"),
    "/api/v1/meters/40/energy?period=slot&format=csv&from=2026-11-22&to=2026-11-24":
        ("200 text/csv; charset=utf-8", "64c01cfa4bf82274e24047359bd79527"),
    "/api/v1/meters/40/energy?period=slot&from=2026-11-24&to=2026-11-24":
        ("200 application/json", "6ac8ba1e737e8ca9356f793d9ed524ec"),
    "/api/v1/meters/40/energy?period=hour&from=2026-11-24&to=2026-11-24":
        ("200 application/json", "666cf072da55b6b5969e2fec14d70b14"),
    "/api/v1/meters/40/energy?period=month&from=2026-11-24&to=2026-11-24":
        ("200 application/json", "187cfca0ab8d097775e2a3c8351328b9"),
    "/api/v1/meters/40/slots?day=2026-11-24":
        ("200 application/json", "6ac8ba1e737e8ca9356f793d9ed524ec"),
    "/api/v1/energy?period=day&from=2026-11-24&to=2026-11-24&direction=reverse":
        ("200 application/json", "0b39c06e2594455c30b9b9970d5a0326"),
    "/api/v1/energy?period=slot&from=2026-11-24&to=2026-11-24&format=csv":
        ("200 text/csv; charset=utf-8", "074fc5dd0f458ce8549c80d4d88308c3"),
    "/api/v1/meters/40/peaks?from=2026-11-24&to=2026-11-24":
        ("200 application/json", "0416e9b4cf8751743fe9fb1c5d531cf2"),
    "/api/v1/meters/40/power?start=2026-11-24T00:00:00&end=2026-11-24T12:00:00&max_points=100":
        ("200 application/json", "296faf23f28eae5845df1e419cb17587"),
    "/api/v1/sites?limit=7&sort=-address":
        ("200 application/json", "c0cf12aca72624c706cfcd4eccd2846a"),
    "/api/v1/sites?limit=7&sort=-address next":
        ("200 application/json", "79ef43f8625ddc7127519c09c0c2c468"),
    "/api/v1/meters/81/energy?period=day&from=2026-11-24&to=2026-11-24":
        ("404 application/problem+json", "746e0c6819e6161d8832c1ab997e108a"),
}  # fmt: skip


def _said(answer: httpx.Response) -> tuple[str, str]:
    head = f"{answer.status_code} {answer.headers['content-type']}"
    return head, hashlib.sha256(answer.content).hexdigest()[:32]  # 128 bits: plenty


def _paths() -> list[str]:
    bench = [
        str(httpx.URL(q.path, params={k: str(v) for k, v in q.params.items()}))
        for q in queries.queries(METERS, DAYS)
    ]
    return bench + VARIANTS


@pytest.fixture
def bench_database(postgres: PostgresDatabases) -> str:
    url = postgres.create().render_as_string(hide_password=False)
    with redirect_stderr(io.StringIO()):  # the builder's progress lines
        queries.build(url, METERS, DAYS)
    return url


@pytest.mark.postgresql
def test_series_and_list_answers_are_the_same_bytes(bench_database: str) -> None:
    key = base64.b64encode(bytes(32)).decode()
    settings = Settings(database_url=bench_database, secret_key=key, devices=False, jobs=False,
                        auto_migrate=False)  # fmt: skip
    app = create_app(settings)
    with app.state.engine.begin() as conn:
        _, key = accounts.insert_api_key(conn, 1, "golden", "viewer")
    answers = {}
    with (
        queries.data_clock(),
        serving(app) as base,
        httpx.Client(base_url=base, headers=bearer(key), timeout=60) as client,
    ):
        for path in _paths():
            answer = client.get(path)
            # The next page of a list: the cursor is part of the answer already.
            answers[path] = _said(answer)
            if path.startswith("/api/v1/sites") and answer.status_code == 200:
                cursor = answer.json()["next_cursor"]
                if cursor:
                    following = httpx.URL(path).copy_merge_params({"cursor": cursor})
                    answers[f"{path} next"] = _said(client.get(following))
    assert answers == GOLDEN


@pytest.mark.parametrize(
    ("written", "model"),
    [
        (api.EnergyAnswer, api.EnergySeries),
        (series.EnergyPoint, api.EnergyValue),
        (api.PowerAnswer, api.PowerSeries),
        (series.PowerPoint, api.PowerValue),
        (peaks.DayPeak, api.DailyPeak),
    ],
)
def test_what_is_written_has_its_models_fields_in_order(written, model) -> None:
    """The answers written without their models (jsonout) keep the models' shape."""
    assert [f.name for f in fields(written)] == list(model.model_fields)
