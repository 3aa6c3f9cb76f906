"""The panel's static files under ``/static``: its own CSS and JavaScript, and plotly.js
taken from the installed `plotly` package (no CDN: panels run on closed networks).

plotly.js is big (about 4.8 MB, 1.4 MB gzipped) and never changes for a given `plotly`
release, so its URL carries that release and it is cached for a year; it is gzipped once,
in memory, for the browsers that accept it. The panel's own files are small and change
with the server, so browsers revalidate them (ETag) on each use.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import importlib.util
from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["PLOTLY_URL", "STATIC_PREFIX", "static_app", "static_url"]

STATIC_PREFIX = "/static"
STATIC_DIR = Path(__file__).parent / "static"
_YEAR = "public, max-age=31536000, immutable"


_NO_PLOTLY = "the control panel needs the 'plotly' package: pip install 'kenshin[server]'"


def _plotly_js() -> Path:
    # find_spec, not import: importing plotly costs 60 ms and gives nothing needed here.
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(_NO_PLOTLY)
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise RuntimeError(f"plotly.min.js is not where the plotly package keeps it: {path}")
    return path


def _plotly_version() -> str:
    try:
        return importlib.metadata.version("plotly")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(_NO_PLOTLY) from None


_VENDOR_PLOTLY = f"/vendor/plotly-{_plotly_version()}.min.js"
PLOTLY_URL = STATIC_PREFIX + _VENDOR_PLOTLY


def static_url(name: str) -> str:
    return f"{STATIC_PREFIX}/{name}"


@functools.cache
def _plotly_gzipped() -> bytes:
    return gzip.compress(_plotly_js().read_bytes(), compresslevel=6, mtime=0)


async def _plotly(request: Request) -> Response:
    headers = {"Cache-Control": _YEAR, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = await anyio.to_thread.run_sync(_plotly_gzipped)
        headers["Content-Encoding"] = "gzip"
        return Response(body, media_type="text/javascript", headers=headers)
    return FileResponse(_plotly_js(), media_type="text/javascript", headers=headers)


class _OwnFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def static_app() -> Router:
    """The ASGI app to mount at `STATIC_PREFIX`."""
    _plotly_js()  # fail at start, not at the first page, when plotly is missing
    from .apidocs import swagger_mount  # Swagger UI for /api/v1/docs, from its package

    return Router(
        routes=[
            Route(_VENDOR_PLOTLY, _plotly, methods=["GET", "HEAD"]),
            swagger_mount(),
            Mount("/", app=_OwnFiles(directory=STATIC_DIR)),
        ]
    )
