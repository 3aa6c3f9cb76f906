"""schemathesis on PostgreSQL, as tenant A's admin (issue 16): what SQLite lets through
PostgreSQL may refuse (a NUL character, a number past a column), and such a refusal was a
500. The same documented promises as test_openapi_fuzz.py, every operation with valid and
invalid requests. (The stateful phase, sequences that follow the API's links, is run with
the schemathesis CLI against `kenshin server run`: in-process, hypothesis replays its
sequences against a database that kept what the last one did, and calls that flaky.)"""

from __future__ import annotations

import pytest
from schemathesis import GenerationMode

from .test_openapi_fuzz import _fuzz_every_operation, fuzzed_app

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]


@pytest.fixture(scope="module")
def pg_fuzzed(tmp_path_factory, postgres):
    url = postgres.create().render_as_string(hide_password=False)
    yield from fuzzed_app(url, tmp_path_factory.mktemp("fuzz-pg"))


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"]
)
def test_no_server_errors_on_postgresql(pg_fuzzed, mode):
    app, fleets = pg_fuzzed
    failures = _fuzz_every_operation(app, mode, fleets["A"].tenant_id, "admin", fleets["B"])
    assert not failures, "\n\n".join(failures)
