"""The web control panel: server-rendered pages (Jinja2) in Japanese and English, a little
own JavaScript, and plotly.js served from the installed `plotly` package.

`router` holds the pages of every area (each area a module with its own router, templates,
scripts and ``locales/<area>.<lang>.json``); `static_app()` is mounted at `STATIC_PREFIX`.
"""

from fastapi import APIRouter

from . import (
    admin,
    alerts,
    apidocs,
    dr,
    export,
    gateway,
    graphs,
    onboard,
    pages,
    plants,
    retail,
    rollouts,
)
from .assets import STATIC_PREFIX, static_app
from .pages import LIST_REFRESH_S

__all__ = ["LIST_REFRESH_S", "STATIC_PREFIX", "apidocs", "router", "static_app"]

router = APIRouter(include_in_schema=False)
for area in (
    pages, gateway, graphs, retail, plants, alerts, rollouts, dr, export, onboard, admin,
):  # fmt: skip
    router.include_router(area.router)
