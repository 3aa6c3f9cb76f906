"""Every error is an RFC 9457 problem; /livez and /readyz need no login."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kenshin.server.app import create_app
from kenshin.server.settings import Settings

from .conftest import World, assert_problem, login


def test_401_403_404_422_are_problems(client: TestClient, world: World) -> None:
    assert "detail" in assert_problem(client.get("/api/v1/users"), 401)
    login(client, "viewer@a.test")
    assert_problem(client.get("/api/v1/users"), 403)
    assert_problem(client.get("/api/v1/no-such-thing"), 404)
    login(client, "admin@a.test")
    assert_problem(client.get(f"/api/v1/users/{world.viewer_b}"), 404)
    problem = assert_problem(client.get("/api/v1/users/not-a-number"), 422)
    assert problem["errors"][0]["loc"] == ["path", "user_id"]
    problem = assert_problem(
        client.post(
            "/api/v1/users", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
    )
    assert problem["errors"]


def test_other_http_errors_are_problems(client: TestClient) -> None:
    assert_problem(client.delete("/readyz"), 405)
    assert_problem(client.get("/nowhere"), 404)


def test_an_unexpected_error_is_a_problem_without_details(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        problem = assert_problem(client.get("/boom"), 500)
    assert "secret internals" not in str(problem)


def test_live_and_ready(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "parts": {"database": {"ok": True}}}


def test_not_ready_without_a_database_but_alive(tmp_path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'missing' / 'dir' / 'k.db'}",
        secret_key_file=tmp_path / "k.key",
        auto_migrate=False,
        devices=False,
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert client.get("/livez").status_code == 200
    problem = assert_problem(response, 503)
    assert problem["parts"]["database"] == {"ok": False, "reason": "the database is unreachable"}
    assert problem["detail"] == "not ready: database: the database is unreachable"


def test_openapi_describes_the_api(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/auth/login", "/api/v1/users", "/api/v1/api-keys", "/api/v1/tenants"):
        assert path in spec["paths"]
    assert {"HTTPBearer", "APIKeyCookie"} <= set(spec["components"]["securitySchemes"])
