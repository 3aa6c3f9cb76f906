"""Integrity of an installed version, as an intrusion signal.

A version's files (``<root>/versions/<v>/``) are compared with the release archive they
were unpacked from (``<root>/archives/<v>.tar``), and that archive with the length and
SHA-256 the repository signed for the release. Whatever differs is drift: a file
changed, added or removed after the install, or an archive that is not the signed one.
Nothing on a healthy gateway changes these files (the supervisor runs the agent with
``PYTHONDONTWRITEBYTECODE`` set, so not even bytecode caches appear), so any drift is
someone or something writing where only an update should: the agent reports it as a
high-severity event (`gateway/updater.py`), at start and daily.

The signed length and hash come from the TUF metadata this gateway verified last and
keeps in its state directory (`trusted_release`): the signatures are checked again here,
from the trusted root down, so a file edited in that directory does not vouch for
anything. Their expiry is not checked: a check run offline must still compare files.
The root key holder can still sign anything, and so can whoever has root on the box;
this is a tripwire, not a wall.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.exceptions import StorageError
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from .names import check_version, release_path

__all__ = ["INTEGRITY_EVENT", "Drift", "check_installed", "trusted_release"]

INTEGRITY_EVENT = "integrity"
SHOWN = 20  # file names per kind in an event; the counts are whole


@dataclass(frozen=True)
class Drift:
    """What differs in `version`'s installed files; `problem` when they could not be
    trusted or compared at all (then `ok` is False too)."""

    version: str
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not (self.changed or self.added or self.removed or self.problem)

    def detail(self) -> dict[str, Any]:
        """The event's detail: the first file names of each kind, and the counts."""
        return {
            "version": self.version,
            "ok": self.ok,
            "changed": list(self.changed[:SHOWN]),
            "added": list(self.added[:SHOWN]),
            "removed": list(self.removed[:SHOWN]),
            "counts": {
                "changed": len(self.changed),
                "added": len(self.added),
                "removed": len(self.removed),
            },
            "problem": self.problem,
        }


def trusted_release(metadata_dir: Path, version: str) -> tuple[int, str] | None:
    """(length, sha256) the repository signed for release `version`, from the metadata
    in `metadata_dir` (the update client's), its signatures checked from the trusted root;
    None if that metadata does not list the release. Raises ValueError when the metadata
    is missing or does not verify."""
    try:
        root = Metadata[Root].from_file(str(metadata_dir / "root.json"))
        root.verify_delegate(Root.type, root)  # a root signs itself, to its own threshold
        chain: list[Metadata[Any]] = []
        for role, kind in ((Timestamp.type, Timestamp), (Snapshot.type, Snapshot),
                           (Targets.type, Targets)):  # fmt: skip
            metadata = Metadata[kind].from_file(str(metadata_dir / f"{role}.json"))
            root.verify_delegate(role, metadata)
            chain.append(metadata)
    except (OSError, ValueError, StorageError, DeserializationError, RepositoryError) as err:
        raise ValueError(f"the update metadata in {metadata_dir} does not verify: {err}") from err
    target = chain[-1].signed.targets.get(release_path(version))
    if target is None or "sha256" not in target.hashes:
        return None
    return target.length, target.hashes["sha256"]


def check_installed(root: Path, version: str, signed: tuple[int, str] | None) -> Drift:
    """Compare ``<root>/versions/<version>`` with its archive, and the archive with
    `signed` (length, sha256; None: the release is not signed, which is drift too)."""
    version = check_version(version)
    installed, archive = root / "versions" / version, root / "archives" / f"{version}.tar"
    if signed is None:
        return Drift(version, problem=f"release {version} is not in the signed metadata")
    try:
        data = archive.read_bytes()
    except OSError as err:
        return Drift(version, problem=f"its archive cannot be read: {err}")
    if (len(data), hashlib.sha256(data).hexdigest()) != signed:
        return Drift(version, problem=f"{archive.name} is not the archive the repository signed")
    expected = dict(_archive_digests(archive))
    present = dict(_tree_digests(installed))
    changed = sorted(n for n in expected.keys() & present.keys() if expected[n] != present[n])
    return Drift(
        version,
        changed=tuple(changed),
        added=tuple(sorted(present.keys() - expected.keys())),
        removed=tuple(sorted(expected.keys() - present.keys())),
    )


def _archive_digests(archive: Path) -> Iterator[tuple[str, str]]:
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile():
                source = tar.extractfile(member)
                assert source is not None  # a regular file has contents
                yield member.name, hashlib.file_digest(source, "sha256").hexdigest()


def _tree_digests(directory: Path) -> Iterator[tuple[str, str]]:
    """Every entry under `directory` that is not a directory, by its relative path (a
    symlink is digested as its target's name: it is never in a release)."""
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_symlink():
            yield name, "symlink:" + str(path.readlink())
        elif path.is_file():
            with path.open("rb") as source:
                yield name, hashlib.file_digest(source, "sha256").hexdigest()
        elif not path.is_dir():
            yield name, "special"
