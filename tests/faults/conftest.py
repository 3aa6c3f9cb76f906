"""Fault tests: the platform in processes, each on PostgreSQL."""

from __future__ import annotations

import pytest

from kenshin.server import security
from tests.gateway.conftest import postgres_url  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The accounts the test makes: scrypt at a test-friendly cost, as the server uses."""
    monkeypatch.setattr(security, "_SCRYPT_N", 2**10)
