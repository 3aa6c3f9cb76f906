"""The gateway's install root: versions side by side, a `current` link switched atomically.

    <root>/versions/<version>/   the unpacked release archive (the `kenshin` package)
    <root>/archives/<version>.tar the verified archive: the delta base of the next update
    <root>/current  -> versions/<version>   what the supervisor runs
    <root>/previous -> versions/<version>   what a rollback goes back to

Every change is a rename, so a crash (power cut, SIGKILL) at any point leaves each name
either as it was or as it is meant to be, never half:

- a version is unpacked into ``versions/.partial-*`` and renamed into place only when
  complete, after its archive is in ``archives/``: a version directory that exists is
  whole, and has its archive;
- a link is switched by making a new link beside it and renaming it over the old one.

Only `current` and `previous` (and their archives) are kept; `prune` removes the rest,
half-unpacked leftovers included. The production form is a venv per version; here a
version is the package alone, run by the base install's interpreter with the version's
directory first on ``PYTHONPATH`` (docs/updates.md). Everything is synchronous file work:
the agent calls it in a thread.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .names import check_version

__all__ = ["InstallError", "Installer"]

PARTIAL = ".partial-"


class InstallError(Exception):
    """The archive or the install root is not usable; the message says why."""


class Installer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.archives = self.root / "archives"
        self.current = self.root / "current"
        self.previous = self.root / "previous"

    # -- reading ------------------------------------------------------------------------------

    def _linked(self, link: Path) -> str | None:
        try:
            target = os.readlink(link)
        except OSError:
            return None
        return Path(target).name

    def current_version(self) -> str | None:
        return self._linked(self.current)

    def previous_version(self) -> str | None:
        return self._linked(self.previous)

    def has(self, version: str) -> bool:
        return (self.versions / check_version(version)).is_dir()

    def archive(self, version: str | None) -> Path | None:
        """The archive `version` was installed from, if kept (the base for a delta)."""
        if version is None:
            return None
        path = self.archives / f"{check_version(version)}.tar"
        return path if path.is_file() else None

    def directory(self, version: str) -> Path:
        """The real directory of `version` (what goes on PYTHONPATH: not the link, which
        may be switched under a running process)."""
        return self.versions / check_version(version)

    def installed(self) -> list[str]:
        if not self.versions.is_dir():
            return []
        return sorted(p.name for p in self.versions.iterdir() if not p.name.startswith("."))

    # -- installing ---------------------------------------------------------------------------

    def unpack(self, version: str, archive: Path) -> Path:
        """Install `archive` (already verified) as `version`; its directory. A version that
        is there already is left as it is."""
        target = self.directory(version)
        if target.is_dir():
            return target
        self.versions.mkdir(parents=True, exist_ok=True)
        self.archives.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{version}-", dir=self.versions))
        try:
            with tarfile.open(archive, mode="r:") as tar:
                for member in tar.getmembers():
                    if not (member.isfile() or member.isdir()) or not member.name.startswith(
                        "kenshin/"
                    ):
                        raise InstallError(f"{archive}: unexpected member {member.name!r}")
                tar.extractall(scratch, filter="data")  # no absolute paths, no links out
            if not (scratch / "kenshin" / "__init__.py").is_file():
                raise InstallError(f"{archive}: no kenshin package in it")
            _fsync_tree(scratch)
            _copy_atomic(archive, self.archives / f"{version}.tar")
            os.rename(scratch, target)
            _fsync_dir(self.versions)
        except (tarfile.TarError, OSError) as err:
            raise InstallError(f"cannot install {version} from {archive}: {err}") from err
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target

    # -- switching ----------------------------------------------------------------------------

    def switch(self, version: str) -> None:
        """Run `version` from now on; the one running until now becomes `previous`.
        Idempotent: a switch cut short by a crash is finished by calling it again."""
        if not self.has(version):
            raise InstallError(f"version {version} is not installed (or only half)")
        running = self.current_version()
        if running is not None and running != version and self.has(running):
            self._link(self.previous, running)
        self._link(self.current, version)
        self.prune()

    def rollback(self, to: str) -> None:
        """Run `to` again (the previous version); the version that failed is removed, and
        `previous` with it: there is nothing safe to go back to from `to` but itself."""
        if not self.has(to):
            raise InstallError(f"version {to} is not installed: cannot roll back to it")
        self._link(self.current, to)
        if self.previous_version() is not None:
            self.previous.unlink()
        self.prune()

    def prune(self, also: Iterable[str] = ()) -> None:
        """Remove every version and archive but current's, previous's and `also`'s (one
        unpacked and waiting for its switch), and leftovers."""
        keep = {self.current_version(), self.previous_version(), *also} - {None}
        if self.versions.is_dir():
            for path in self.versions.iterdir():
                if path.name not in keep:
                    shutil.rmtree(path, ignore_errors=True)
        if self.archives.is_dir():
            for path in self.archives.iterdir():
                if path.name.removesuffix(".tar") not in keep:
                    path.unlink(missing_ok=True)
        for path in self.root.glob(".link-*"):
            path.unlink(missing_ok=True)

    def _link(self, link: Path, version: str) -> None:
        fresh = self.root / f".link-{link.name}-{os.getpid()}"
        fresh.unlink(missing_ok=True)
        os.symlink(Path("versions") / version, fresh)  # relative: the root may be moved
        os.replace(fresh, link)
        _fsync_dir(self.root)


def _copy_atomic(source: Path, target: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".", delete=False) as out:
        with open(source, "rb") as data:
            shutil.copyfileobj(data, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(out.name, target)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Every file's bytes on disk before the rename that makes the version whole."""
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))
