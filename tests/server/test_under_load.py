"""The API under load (issue 21): requests beyond the database pool wait their turn and are
answered, through a real uvicorn server; a request whose turn does not come in time is a
503 problem with Retry-After, never a hang followed by a 500."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import date

import httpx
import pytest
from fastapi.testclient import TestClient

from kenshin.server import accounts
from kenshin.server.app import create_app
from kenshin.server.deps import DbGate
from kenshin.server.devices import registry
from kenshin.server.settings import Settings

from .conftest import World, assert_problem, bearer, serving

CLIENTS = 200


async def _all_at_once(base: str, key: str, paths: list[str]) -> list[tuple[int, float]]:
    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=len(paths))
    async with httpx.AsyncClient(base_url=base, headers=bearer(key), limits=limits,
                                 timeout=120) as client:  # fmt: skip

        async def one(path: str) -> tuple[int, float]:
            started = time.monotonic()
            response = await client.get(path)
            return response.status_code, time.monotonic() - started

        return await asyncio.gather(*(one(p) for p in paths))


@pytest.fixture
def small_pool(settings: Settings) -> Settings:
    """A pool far smaller than the thread pool (40) and the clients: what deadlocked. The
    wait for a turn is long, so only a hang could reach it, even on a loaded machine."""
    return settings.model_copy(update={"db_pool_size": 4, "db_pool_overflow": 0, "db_wait_s": 30.0})


def test_200_concurrent_requests_are_all_answered(small_pool: Settings) -> None:
    app = create_app(small_pool)
    with TestClient(app):  # migrated, and the data made through the same engine
        world = World(app.state.engine)
        with app.state.engine.begin() as conn:
            for n in range(5):
                registry.add_site(conn, world.tenant_a, "system", customer_id=f"C{n}",
                                  service_code=f"pss{n:08d}")  # fmt: skip
            _, key = accounts.insert_api_key(conn, world.tenant_a, "load", "viewer")
    today = date.today()
    paths = [
        "/api/v1/sites?limit=50",
        f"/api/v1/energy?period=slot&from={today}&to={today}",
        "/api/v1/meters?limit=50",
        "/api/v1/auth/me",
    ]
    with serving(create_app(small_pool)) as base:
        answers = asyncio.run(_all_at_once(base, key, [paths[n % 4] for n in range(CLIENTS)]))
    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: CLIENTS}, statuses
    # They queued for 4 connections and were answered: not one waited out a timeout.
    assert max(seconds for _, seconds in answers) < small_pool.db_wait_s


def test_no_turn_in_time_is_a_503_problem_with_retry_after(
    client: TestClient, app, world: World, engine
) -> None:
    with engine.begin() as conn:
        _, key = accounts.insert_api_key(conn, world.tenant_a, "load", "viewer")
    assert client.get("/api/v1/sites", headers=bearer(key)).status_code == 200
    app.state.db_gate = DbGate(0, 0.05)  # no turn ever comes
    response = client.get("/api/v1/sites", headers=bearer(key))
    body = assert_problem(response, 503)
    assert "busy" in body["detail"]
    assert response.headers["retry-after"] == "1"
    assert client.get("/livez").status_code == 200  # takes no turn: says the server is up


def test_a_turn_is_given_in_order_and_given_back() -> None:
    gate = DbGate(1, 5.0)
    order: list[int] = []

    async def request(n: int) -> None:
        async with gate.turn():
            order.append(n)
            await asyncio.sleep(0.01)

    async def main() -> None:
        await asyncio.gather(*(request(n) for n in range(20)))
        async with gate.turn():  # every turn came back
            pass

    asyncio.run(main())
    assert order == list(range(20))
