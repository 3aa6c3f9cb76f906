"""Limits before work (issue 16): request bodies capped before authentication and while
they arrive; logins, enrollment and password resets rate-limited with 429 and
Retry-After; the password hash computed outside any transaction and off the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from kenshin.server.api import auth
from kenshin.server.app import create_app

from .conftest import PASSWORD, World, assert_problem, login

CHUNK = 64 * 1024


def _asgi_post(app, path: str, chunks: int, content_length: int | None) -> tuple[int, int, dict]:
    """POST `chunks` chunks of 64 KiB straight into the ASGI application: (status, chunks
    the application asked for, the answer's body)."""
    asked = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": asked < chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], asked, json.loads(body)


def test_a_declared_large_body_is_refused_before_a_byte_is_read(app, client) -> None:
    """The attacker's 300 MB anonymous POST: 413 at once, nothing read (it was read whole,
    then answered 401)."""
    status, asked, body = _asgi_post(app, "/api/v1/users", 4600, 300_000_000)
    assert (status, asked) == (413, 0)
    assert body["status"] == 413 and "1048576 bytes" in body["detail"]


def test_an_undeclared_large_body_is_cut_off_as_it_arrives(app, client) -> None:
    """Chunked, no Content-Length: read only up to the cap (1 MiB = 16 chunks), then 413."""
    status, asked, body = _asgi_post(app, "/api/v1/users", 4600, None)
    assert status == 413 and asked == 1024 * 1024 // CHUNK + 1
    assert body["status"] == 413 and "1048576 bytes" in body["detail"]


def test_uploads_have_their_own_larger_cap(client: TestClient, world: World) -> None:
    login(client, "admin@a.test")
    two_mib = "x" * (2 * 1024 * 1024)
    assert_problem(client.post("/api/v1/users", content=two_mib), 413)
    # Past the 1 MiB default, within the upload cap: the plan's parser answers, not the cap.
    plan = "slot_start,kwh\n" + "2026-11-25T00:00,1\n" * 120_000
    refused = client.put("/api/v1/procurement-plan.csv", content=plan)
    assert refused.status_code == 400, refused.text


def _wrong(client: TestClient, email: str, **more):
    return client.post("/api/v1/auth/login", json={"email": email, "password": "nope", **more})


def test_wrong_passwords_for_one_account_get_429_with_retry_after(
    client: TestClient, world: World, new_client: Callable[[], TestClient]
) -> None:
    """40 wrong passwords were 40 × 401 in 7 s. Now the 11th in a minute is refused before
    its hash is computed, the right password included, with Retry-After."""
    for _ in range(10):
        assert_problem(_wrong(client, "viewer@a.test"), 401)
    refused = client.post(
        "/api/v1/auth/login", json={"email": "VIEWER@a.test", "password": PASSWORD}
    )
    assert_problem(refused, 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    login(client, "operator@a.test")  # another account is not held up


def test_one_address_trying_many_accounts_is_limited(client: TestClient, world: World) -> None:
    for n in range(30):
        assert_problem(_wrong(client, f"nobody{n}@a.test"), 401)
    refused = _wrong(client, "admin@a.test")
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1


def test_the_panels_login_counts_with_the_apis(client: TestClient, world: World) -> None:
    for _ in range(10):
        assert_problem(_wrong(client, "viewer@a.test"), 401)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"email": "viewer@a.test", "password": PASSWORD, "csrf_token": token}
    answer = client.post("/login", data=form, follow_redirects=False)
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    assert "kenshin_session" not in answer.cookies


def test_enrollment_is_limited_per_gateway_serial(client: TestClient) -> None:
    for _ in range(10):
        answer = client.post("/api/v1/enroll/challenge", json={"serial": "GW-X"})
        assert answer.status_code == 200
    refused = client.post("/api/v1/enroll/challenge", json={"serial": "GW-X"})
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1
    enroll = {"serial": "GW-X", "challenge": "c", "signature": "s"}
    assert_problem(client.post("/api/v1/enroll", json=enroll), 429)
    assert client.post("/api/v1/enroll/challenge", json={"serial": "GW-Y"}).status_code == 200


def test_enrollment_is_limited_per_client_address(settings) -> None:
    app = create_app(settings.model_copy(update={"enroll_limit_per_client": "3/minute"}))
    with TestClient(app) as client:
        for serial in ("GW-1", "GW-2", "GW-3"):
            assert (
                client.post("/api/v1/enroll/challenge", json={"serial": serial}).status_code == 200
            )
        refused = client.post("/api/v1/enroll/challenge", json={"serial": "GW-4"})
        assert_problem(refused, 429)


def test_password_resets_of_one_user_are_limited(client: TestClient, world: World) -> None:
    login(client, "admin@a.test")
    url = f"/api/v1/users/{world.viewer_a}"
    for n in range(10):
        assert client.patch(url, json={"password": f"new password {n}"}).status_code == 200
    refused = client.patch(url, json={"password": "one more password"})
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.patch(url, json={"role": "operator"}).status_code == 200  # not a reset


def test_the_password_hash_runs_outside_transactions_and_off_the_loop(
    client: TestClient, world: World, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each login ran scrypt (~32 MiB) while holding a database transaction."""
    seen: list[tuple[int, bool]] = []
    verify = auth.verify_password

    def watched(password: str, stored: str) -> bool:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        seen.append((engine.pool.checkedout(), on_loop))
        return verify(password, stored)

    monkeypatch.setattr(auth, "verify_password", watched)
    login(client, "viewer@a.test")
    assert_problem(_wrong(client, "viewer@a.test"), 401)
    assert_problem(_wrong(client, "nobody@a.test"), 401)
    assert seen == [(0, False)] * 3  # no connection checked out, not on the event loop


def test_an_admins_password_hashes_run_between_transactions(
    client: TestClient, world: World, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a user or resetting a password: the session was looked up in the request's
    transaction, which stayed open through scrypt."""
    from sqlalchemy import event

    from kenshin.server import accounts

    trail: list[str] = []
    hash_password = accounts.hash_password
    monkeypatch.setattr(
        accounts, "hash_password", lambda p: trail.append("hash") or hash_password(p)
    )
    login(client, "admin@a.test")
    event.listen(engine, "before_cursor_execute", lambda *a: trail.append("sql"))
    event.listen(engine, "commit", lambda *a: trail.append("commit"))
    added = client.post("/api/v1/users", json={"email": "n@a.test", "password": "a long password"})
    assert added.status_code == 201
    reset = client.patch(f"/api/v1/users/{world.viewer_a}", json={"password": "another password"})
    assert reset.status_code == 200
    hashes = [n for n, step in enumerate(trail) if step == "hash"]
    assert len(hashes) == 2
    for at in hashes:  # since the last statement, a commit: no transaction open
        before = [step for step in trail[:at] if step != "hash"]
        assert not before or before[-1] == "commit", trail
