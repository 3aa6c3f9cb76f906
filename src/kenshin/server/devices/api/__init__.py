"""The devices room's HTTP face, one router a resource, gathered in `router`: enrollment
(no user auth: the device proves itself), the factory import and claiming, sites, meters,
homes from a CSV, settings, commands and events.

B-route credentials go in and never come out: responses say only whether a meter has
them. Another tenant's ids are not found (404), whatever the endpoint. The lists' SQL is
in `devices/queries.py`. The routers are included in the order the routes were written in
when this was one module, so the OpenAPI document keeps its order.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import commands, enroll, gateways, homes, meters, settings, sites
from .homes import HOME_COLUMNS, HOME_OPTIONAL

__all__ = ["HOME_COLUMNS", "HOME_OPTIONAL", "router"]

router = APIRouter()
for _part in (enroll, gateways, sites, meters, homes, settings, commands):
    router.include_router(_part.router)
