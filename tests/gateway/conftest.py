"""Fixtures of the gateway end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.conftest import PG_ADMIN_URL, PostgresDatabases, _unavailable


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for one test (the server tests' server,
    $KENSHIN_TEST_POSTGRES_URL), dropped afterwards."""
    databases = PostgresDatabases(PG_ADMIN_URL)
    try:
        databases.check()
    except Exception as err:  # psycopg.OperationalError
        _unavailable(str(err).strip().splitlines()[0] if str(err).strip() else repr(err))
    url = databases.create()
    try:
        yield url.set(drivername="postgresql").render_as_string(hide_password=False)
    finally:
        databases.drop_all()


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
