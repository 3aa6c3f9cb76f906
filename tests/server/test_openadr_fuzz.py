"""schemathesis against the OpenADR VTN's own OpenAPI document (`/openadr3/3.0.1/
openapi.json`): generated requests for every operation, as business logic and as a VEN
of tenant A, on a VTN where tenants A and B both have a program, an event, a report, a
subscription and a VEN (so small generated ids hit real rows). No 5xx, every response as
documented, every error a problem (the token endpoint's are RFC 6749's), and never a byte
of tenant B's objects."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from kenshin.server.app import create_app
from kenshin.server.problems import PROBLEM_JSON

from .conftest import PASSWORD, World, login
from .test_openadr import PROGRAM, event_for

pytestmark = pytest.mark.slow
BASE = "/openadr3/3.0.1"
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
MARKER = "B-SECRET-7731"


def _tenant(client: TestClient, email: str, tag: str) -> dict[str, dict[str, str]]:
    """A VTN for the tenant of `email` with one of each object; its clients' headers."""
    login(client, email, PASSWORD)
    made = {
        role: client.post("/api/v1/openadr/clients", json={"role": role, "name": f"{tag}-{role}"})
        .json() for role in ("bl", "ven")
    }  # fmt: skip
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token")
    headers = {}
    for role, m in made.items():
        answer = client.post(f"{BASE}/auth/token", data={"grant_type": "client_credentials"},
                             auth=(m["client_id"], m["client_secret"]))  # fmt: skip
        headers[role] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    name = MARKER if tag == "B" else "A-program"
    program = client.post(f"{BASE}/programs", json={**PROGRAM, "programName": name},
                          headers=headers["bl"]).json()  # fmt: skip
    event = client.post(f"{BASE}/events", json={**event_for(program["id"]), "eventName": name},
                        headers=headers["bl"]).json()  # fmt: skip
    client.post(f"{BASE}/reports", headers=headers["ven"], json={
        "programID": program["id"], "eventID": event["id"], "clientName": name,
        "resources": [{"resourceName": name, "intervals": []}]})  # fmt: skip
    client.post(f"{BASE}/subscriptions", headers=headers["ven"], json={
        "clientName": name, "programID": program["id"],
        "objectOperations": [{"objects": ["EVENT"], "operations": ["POST"],
                              "callbackUrl": "http://127.0.0.1:9/cb"}]})  # fmt: skip
    ven = client.post(f"{BASE}/vens", json={"venName": f"{tag}-ven"}, headers=headers["ven"])
    client.post(f"{BASE}/vens/{ven.json()['id']}/resources", json={"resourceName": name},
                headers=headers["ven"])  # fmt: skip
    return headers


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    import base64
    import secrets

    from kenshin.server.db import migrate
    from kenshin.server.settings import Settings

    url = f"sqlite:///{tmp_path_factory.mktemp('oadr-fuzz') / 'kenshin.db'}"
    migrate(url)
    app = create_app(Settings(
        database_url=url, secret_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        devices=False, jobs=False, auto_migrate=False, webhooks_allow_private=True,
        login_limit="100000/minute", login_limit_per_client="100000/minute",
    ))  # fmt: skip
    with pytest.MonkeyPatch.context() as patch, TestClient(app) as client:
        from kenshin.server import security

        patch.setattr(security, "_SCRYPT_N", 2**10)
        World(app.state.engine)
        headers = _tenant(client, "admin@a.test", "A")
        _tenant(client, "admin@b.test", "B")
    yield app, headers
    app.state.engine.dispose()


def _errors_are_problems(ctx, response, case) -> None:
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    if case.path.endswith("/auth/token") and response.status_code in (400, 401):
        assert "error" in response.json()  # RFC 6749's error, as the spec says
        return
    assert content_type.startswith(PROBLEM_JSON), f"an error as {content_type!r}"
    body = response.json()
    assert body["status"] == response.status_code and body["title"], body


def _nothing_of_b(ctx, response, case) -> None:
    assert MARKER not in response.text, "tenant B's object in the answer"


@pytest.mark.parametrize(
    ("role", "mode"),
    [("bl", GenerationMode.POSITIVE), ("ven", GenerationMode.POSITIVE),
     ("bl", GenerationMode.NEGATIVE)],
    ids=["bl", "ven", "bl-invalid-requests"],
)  # fmt: skip
def test_the_vtn_keeps_its_documented_promises(fuzzed, role, mode):
    app, headers = fuzzed
    schema = schemathesis.openapi.from_asgi(f"{BASE}/openapi.json", app)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @seed(7731)
        def run(case):
            # Not positive_data_acceptance: the VTN refuses, documented, what no schema
            # says (an event of a program that does not exist, a name taken). Not
            # negative_data_rejection either: the spec's objects take properties they do
            # not name, and a query parameter generated as a list or an object arrives as
            # text that is a valid value; schemathesis counted both as invalid data
            # accepted, differently from run to run under xdist. Invalid requests must
            # still never be a 5xx, nor an error other than a problem, nor leak tenant B.
            case.call_and_validate(
                headers=headers[role], additional_checks=[_errors_are_problems, _nothing_of_b],
                excluded_checks=[positive_data_acceptance, negative_data_rejection],
            )  # fmt: skip

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE
        except (Exception, BaseExceptionGroup) as err:
            failures.append(f"{operation.label}: {str(err)[:1500]}")
    assert not failures, "\n\n".join(failures)
