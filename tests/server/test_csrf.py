"""Cross-site requests (issue 16): a cookie-authenticated unsafe request needs the
session's CSRF token and, when the browser names one, this server's origin; the login
form carries a pre-session token; API keys are unaffected; cookies are Secure over HTTPS."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kenshin.server import schema as s

from .conftest import PASSWORD, World, assert_problem, bearer, login
from .test_live import meters  # noqa: F401  (a fixture)

EVIL = {"Origin": "https://evil.example"}


def _commands(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(s.commands)).scalar_one()


def test_a_cross_site_form_cannot_start_a_live_trace(
    client: TestClient,
    world: World,
    engine,
    meters: dict[str, int],  # noqa: F811
) -> None:
    """The attacker's form-encoded POST /meters/1/live from evil.example answered 200 and
    sent a realtime command."""
    login(client, "operator@a.test")
    token = client.headers.pop("X-CSRF-Token")
    url = f"/api/v1/meters/{meters['watched']}/live"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert_problem(client.post(url, content="a=1", headers={**form, **EVIL}), 403)
    assert_problem(client.post(url, content="a=1", headers=form), 403)  # no token
    wrong = {"X-CSRF-Token": "not-the-token"}
    assert_problem(client.post(url, headers=wrong), 403)
    evil_referer = {"Referer": "https://evil.example/page", "X-CSRF-Token": token}
    assert_problem(client.post(url, headers=evil_referer), 403)
    assert _commands(engine) == 0
    own = {"X-CSRF-Token": token, "Origin": "http://testserver"}
    assert client.post(url, headers=own).status_code == 200
    assert _commands(engine) == 1


def test_the_token_belongs_to_its_session(
    client: TestClient, world: World, new_client: Callable[[], TestClient]
) -> None:
    login(client, "admin@a.test")
    other = login(new_client(), "admin@a.test")
    user = {"email": "new@a.test", "password": "a long password"}
    stolen = {"X-CSRF-Token": other.headers["X-CSRF-Token"]}
    assert_problem(client.post("/api/v1/users", json=user, headers=stolen), 403)
    again = client.get("/api/v1/auth/me").headers["X-CSRF-Token"]
    assert again == client.headers["X-CSRF-Token"]
    assert client.post("/api/v1/users", json=user).status_code == 201


def test_api_keys_are_not_asked_for_a_token(
    client: TestClient, world: World, new_client: Callable[[], TestClient]
) -> None:
    login(client, "admin@a.test")
    key = client.post("/api/v1/api-keys", json={"name": "script", "role": "admin"}).json()["key"]
    program = new_client()
    user = {"email": "new@a.test", "password": "a long password"}
    answer = program.post("/api/v1/users", json=user, headers={**bearer(key), **EVIL})
    assert answer.status_code == 201, answer.text


def _login_token(client: TestClient) -> str:
    page = client.get("/login")
    return page.text.split('name="csrf_token" value="')[1].split('"')[0]


def test_login_cannot_be_forged(client: TestClient, world: World) -> None:
    """Another site's form could log a browser into the attacker's account."""
    form = {"email": "viewer@a.test", "password": PASSWORD}
    forged = client.post("/login", data=form, follow_redirects=False)
    assert forged.status_code == 403 and "kenshin_session" not in forged.cookies
    token = _login_token(client)
    from_evil = client.post("/login", data={**form, "csrf_token": token}, headers=EVIL)
    assert_problem(from_evil, 403)
    json_from_evil = client.post("/api/v1/auth/login", json=form, headers=EVIL)
    assert_problem(json_from_evil, 403)
    good = client.post("/login", data={**form, "csrf_token": token}, follow_redirects=False)
    assert good.status_code == 303 and "kenshin_session" in good.cookies


def test_logout_needs_the_forms_token(client: TestClient, world: World) -> None:
    login(client, "viewer@a.test")
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.get("/api/v1/auth/me").status_code == 200  # still logged in
    home = client.get("/")
    token = home.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert f'<meta name="csrf-token" content="{token}">' in home.text
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/v1/auth/me").status_code == 401


def test_cookies_are_secure_over_https(app, client: TestClient, world: World) -> None:
    plain = client.post("/api/v1/auth/login", json={"email": "viewer@a.test", "password": PASSWORD})
    assert "secure" not in plain.headers["set-cookie"].lower()
    with TestClient(app, base_url="https://testserver") as tls:
        answer = tls.post(
            "/api/v1/auth/login", json={"email": "viewer@a.test", "password": PASSWORD}
        )
        assert answer.status_code == 200
        assert "secure" in answer.headers["set-cookie"].lower()
        assert "secure" in tls.get("/login").headers["set-cookie"].lower()  # the pre-session one
