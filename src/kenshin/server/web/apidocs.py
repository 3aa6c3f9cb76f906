"""The API's documentation page, ``/api/v1/docs``, with Swagger UI served from the
installed `swagger-ui-bundle-v2` package (module `swagger_ui_bundle`) under
``/static/vendor/swagger-ui-<version>/``: FastAPI's default page loads it from a CDN, and
is blank on the closed networks the server runs on. The files are a release's and never
change under one URL: cached for a year.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .assets import STATIC_PREFIX, static_url

__all__ = ["DOCS_PATH", "router", "swagger_mount"]

DOCS_PATH = "/api/v1/docs"
OPENAPI_PATH = "/api/v1/openapi.json"
_YEAR = "public, max-age=31536000, immutable"


def _swagger_dir() -> Path:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        raise RuntimeError(
            "the API docs need the 'swagger-ui-bundle-v2' package: pip install 'kenshin[server]'"
        ) from None
    return Path(str(swagger_ui_path))


_VENDOR = f"/vendor/{_swagger_dir().name}"  # swagger-ui-5.31.0: the release is in the URL
router = APIRouter(include_in_schema=False)


class _ReleaseFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = _YEAR
        return response


def swagger_mount() -> Mount:
    """For the static app: the package's files at ``/vendor/swagger-ui-<version>``."""
    return Mount(_VENDOR, app=_ReleaseFiles(directory=_swagger_dir()))


@router.get(DOCS_PATH)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_PATH,
        title="Kenshin API",
        swagger_js_url=f"{STATIC_PREFIX}{_VENDOR}/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_PREFIX}{_VENDOR}/swagger-ui.css",
        swagger_favicon_url=static_url("favicon.svg"),
    )
