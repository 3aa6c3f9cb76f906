"""A release archive: an uncompressed tar whose bytes depend only on the files' contents.

Members in sorted order, mtime 0, owner 0:0 with no names, mode 0644 (0755 for
directories), PAX headers never needed for our paths: an unchanged file is the same bytes
at the same offset in every release, which is what keeps a bsdiff delta to about the
size of what changed (and the archive the same on every build machine).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["agent_files", "build_archive"]

# What a gateway runs, of the src/kenshin package: the agent and what it imports. The
# server, the simulators and the test helpers stay out.
GATEWAY_PACKAGES = ("echonet", "wisun", "meter", "wire", "gateway", "updates")
GATEWAY_MODULES = ("__init__.py", "__main__.py", "jst.py", "ports.py")


def build_archive(files: Mapping[str, bytes]) -> bytes:
    """The tar of `files` (archive path → bytes), deterministic."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def agent_files(package_dir: Path, *, extra: Iterable[str] = ()) -> dict[str, bytes]:
    """The gateway's files of the `kenshin` package at `package_dir` (e.g. src/kenshin),
    as ``kenshin/<path>`` → bytes; no caches."""
    package_dir = Path(package_dir)
    found: dict[str, bytes] = {}
    for name in (*GATEWAY_MODULES, *extra):
        path = package_dir / name
        if path.is_file():
            found[f"kenshin/{name}"] = path.read_bytes()
    for package in GATEWAY_PACKAGES:
        for path in sorted((package_dir / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[f"kenshin/{path.relative_to(package_dir).as_posix()}"] = path.read_bytes()
    return found
