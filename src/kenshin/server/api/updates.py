"""The gateways' update repository, served read-only: ``GET /updates/metadata/<file>`` and
``GET /updates/targets/<path>`` from the setting ``updates_dir`` (the directory `kenshin
release init` made; docs/updates.md).

No authentication: everything here is signed, and a gateway verifies it with TUF (what an
attacker could change, the gateway refuses), so the server need not be trusted with it
either. What it must not do is serve anything else: a path is taken only if it is made of
plain names (no ``..``, no absolute path, no backslash or NUL) and resolves, symlinks
followed, to the same file inside the kind's directory; any symlink is refused, even
one that stays inside. Versioned files never change (consistent snapshots): they may be
cached for good; ``timestamp.json`` (and the unversioned copies) must not be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

__all__ = ["resolve_inside", "router"]

router = APIRouter(prefix="/updates", tags=["updates"], include_in_schema=False)

MAX_PATH = 512
_CURRENT = {"root.json", "timestamp.json", "snapshot.json", "targets.json", "recipes.json"}


def resolve_inside(base: Path, relative: str) -> Path | None:
    """The regular file `relative` names inside `base`, or None if it names anything else
    (outside, through a symlink, a directory, or nothing)."""
    if not relative or len(relative) > MAX_PATH or "\\" in relative or "\x00" in relative:
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    try:
        root = base.resolve(strict=True)
        found = root.joinpath(*parts)
        # resolve() follows every symlink: equal to the plain join only if there was none.
        if found.resolve(strict=True) != found or not found.is_file():
            return None
    except (OSError, RuntimeError):  # missing, a loop, a name too long
        return None
    return found


@router.get("/{kind}/{path:path}", summary="A file of the gateways' update repository")
def repository_file(kind: Literal["metadata", "targets"], path: str, request: Request) -> Response:
    base = request.app.state.settings.updates_dir
    found = resolve_inside(Path(base) / kind, path) if base is not None else None
    if found is None:
        return Response(status_code=404)
    mutable = kind == "metadata" and found.name in _CURRENT
    cache = "no-cache" if mutable else "public, max-age=31536000, immutable"
    return FileResponse(found, headers={"Cache-Control": cache}, media_type=_media(kind))


def _media(kind: str) -> str:
    return "application/json" if kind == "metadata" else "application/octet-stream"
