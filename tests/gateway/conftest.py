"""Fixtures of the gateway end-to-end tests."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"kenshin_e2e_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {err}")
        pytest.skip(f"PostgreSQL unavailable: {err}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def install(
    ops, claim_code: str, service_code: str, meter: dict
) -> tuple[dict, dict, object]:
    """As an operator: a site, the gateway claimed to it, and a meter behind the gateway.
    Returns (site, gateway, the meter request's response)."""
    site = (
        await ops.post(
            "/api/v1/sites", json={"customer_id": service_code, "service_code": service_code}
        )
    ).json()
    gateway = (
        await ops.post(
            "/api/v1/gateways/claim", json={"claim_code": claim_code, "site_id": site["id"]}
        )
    ).json()
    answer = await ops.post(
        "/api/v1/meters", json={"site_id": site["id"], "gateway_id": gateway["id"], **meter}
    )
    return site, gateway, answer
