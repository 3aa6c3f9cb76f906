"""The REST API, one router per concern, mounted under ``/api/v1`` (see `api_router`)."""

from __future__ import annotations

from fastapi import APIRouter

from ..problems import PROBLEM_RESPONSES
from . import api_keys, audit, auth, quarantine, tenants, users

__all__ = ["API_PREFIX", "api_router"]

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    """A fresh router with every API concern of this package under ``/api/v1``."""
    router = APIRouter(prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    for concern in (auth, tenants, users, api_keys, quarantine, audit):
        router.include_router(concern.router)
    return router
