"""schemathesis against the OpenAPI document: generated requests for every operation, as
tenant A's admin API key and as its viewer key, on a database where two tenants have
fleets with data (so generated small ids hit real rows, A's and B's). No 5xx; every
response as documented (status, content type, body schema); every error a problem+json;
never a byte of tenant B's data. Then requests the schema forbids, as the admin: each
refused with a 4xx (and as documented, too)."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from kenshin.jst import JST
from kenshin.server import accounts, security
from kenshin.server.app import create_app
from kenshin.server.bootstrap import create_tenant, ensure_admin
from kenshin.server.db import migrate
from kenshin.server.problems import PROBLEM_JSON
from kenshin.server.settings import Settings

from .conftest import PASSWORD, login
from .test_cross_tenant import Fleet, build_fleet, weather_file

pytestmark = pytest.mark.slow  # generated requests, 10-50 s an operation set

# Examples per operation: every run the same (derandomized, seeded), about a minute each.
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """The app on SQLite with tenants A and B, each a fleet with a day of data."""
    where = tmp_path_factory.mktemp("fuzz")
    yield from fuzzed_app(f"sqlite:///{where / 'kenshin.db'}", where)


def fuzzed_app(url: str, where):
    """The app on the database at `url` (empty) with tenants A and B, each a fleet with a
    day of data: yields (app, fleets), disposes of the engine after."""
    day = datetime.now(JST).date() - timedelta(days=1)
    migrate(url)
    app = create_app(
        Settings(
            database_url=url,
            secret_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            devices=False,
            jobs=False,
            auto_migrate=False,
            webhooks_allow_private=True,  # the fleets' hooks are on loopback
            weather_csv=weather_file(where / "weather.csv", day),
        )
    )
    engine = app.state.engine
    clients: list[TestClient] = []

    def new_client() -> TestClient:
        clients.append(TestClient(app))
        return clients[-1]

    with pytest.MonkeyPatch.context() as patch:  # scrypt at a test-friendly cost
        patch.setattr(security, "_SCRYPT_N", 2**10)
        ensure_admin(engine, "root@kenshin.test", PASSWORD)
        root = login(new_client(), "root@kenshin.test")
        fleets = {}
        for tag in ("A", "B"):
            tenant_id = create_tenant(engine, f"Tenant {tag}", "retailer",
                                      admin_email=f"admin@{tag.lower()}.test",
                                      admin_password=PASSWORD)  # fmt: skip
            fleets[tag] = build_fleet(engine, new_client, root, tenant_id, tag, day)
    for client in clients:
        client.close()
    yield app, fleets
    engine.dispose()


def _errors_are_problems(ctx, response, case) -> None:
    """Every error answers in the one problem format (RFC 9457)."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(PROBLEM_JSON), f"an error as {content_type!r}"
    body = response.json()
    assert body["status"] == response.status_code and body["title"], body


def _nothing_of(fleet: Fleet):
    def check(ctx, response, case) -> None:
        leaked = [m for m in fleet.markers if m in response.text]
        assert not leaked, f"tenant {fleet.tag}'s {leaked} in the answer"

    check.__name__ = f"nothing_of_tenant_{fleet.tag}"
    return check


def _fuzz(
    operation, mode: GenerationMode, tenant_id: int, headers: dict[str, str], checks: list
) -> None:
    """schemathesis's checks and `checks` on generated requests for `operation`."""
    # The key's own tenant named, when generated requests are valid ones: a random other
    # would stop most of them at the door (test_cross_tenant.py walls every other one).
    named = {"tenant_id": tenant_id} if mode is GenerationMode.POSITIVE else {}
    if "tenant_id" not in [p.name for p in operation.query]:
        named = {}

    @given(case=operation.as_strategy(mode, query=named or None))
    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @seed(7731)
    def run(case):
        # Not positive_data_acceptance: some rules are no schema's business (a range past
        # its limit, a cursor from another list) and are refused, documented, with a 400.
        case.call_and_validate(
            headers=headers, additional_checks=checks, excluded_checks=[positive_data_acceptance]
        )

    try:
        run()
    except Unsatisfiable:  # nothing to get wrong: no parameters, no body
        assert mode is GenerationMode.NEGATIVE


def _fuzz_every_operation(
    app, mode: GenerationMode, tenant_id: int, role: str, walled: Fleet
) -> list[str]:
    """Every operation fuzzed as a `role` key of `tenant_id`; the failures."""
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    checks = [_errors_are_problems, _nothing_of(walled)]
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletions last, so that what they remove was there for the other operations.
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):
        # A fresh key per operation: a generated DELETE /api-keys/{id} may revoke the last.
        with app.state.engine.begin() as conn:
            _, key = accounts.insert_api_key(conn, tenant_id, f"fuzz-{role}", role)
        try:
            _fuzz(operation, mode, tenant_id, {"Authorization": f"Bearer {key}"}, checks)
        except (Exception, BaseExceptionGroup) as err:  # schemathesis's FailureGroup
            failures.append(f"{operation.label}: {str(err)[:1500]}")
    return failures


@pytest.mark.parametrize(
    ("role", "mode"),
    [("admin", GenerationMode.POSITIVE), ("viewer", GenerationMode.POSITIVE),
     ("admin", GenerationMode.NEGATIVE)],
    ids=["admin", "viewer", "admin-invalid-requests"],
)  # fmt: skip
def test_the_api_keeps_its_documented_promises(fuzzed, role, mode):
    app, fleets = fuzzed
    failures = _fuzz_every_operation(app, mode, fleets["A"].tenant_id, role, walled=fleets["B"])
    assert not failures, "\n\n".join(failures)
