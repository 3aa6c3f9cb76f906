"""The operator's TUF repository of gateway software, on disk, signed with python-tuf.

Layout (what the server serves, read-only, at ``/updates/``)::

    <repo>/metadata/1.root.json, 2.root.json, ...   every root, for clients to walk
    <repo>/metadata/<N>.targets.json, <N>.recipes.json, <N>.snapshot.json, timestamp.json
    <repo>/metadata/root.json, targets.json, ...    the current copies the repository edits
    <repo>/targets/releases/<sha256>.<version>.tar  and deltas/, recipes/ likewise

Consistent snapshots: every file but ``timestamp.json`` is written under a new name, so a
client reading while the operator publishes sees one whole state or the other; the
timestamp, written last, switches.

Roles: ``root`` (trusts the keys of the others), ``targets`` (releases and deltas; it
delegates ``recipes/*`` to the role ``recipes``, whose authors sign their own recipes),
``snapshot`` and ``timestamp`` (which versions are current; signed online by the server).
Keys: `keys.py`. Each role's metadata expires after `EXPIRY` (the timestamp soonest: a
mirror that replays an old state is caught within a day); `refresh_timestamp` renews the
online roles and is what the server runs, e.g. hourly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from . import keys as k
from .names import RECIPES_PATTERN, parse_delta_path, parse_release_path, recipe_path, release_path

__all__ = ["EXPIRY", "ReleaseError", "Repository", "version_key"]

TOP_ROLES = ("root", "targets", "snapshot", "timestamp")
RECIPES = "recipes"
ROLES = (*TOP_ROLES, RECIPES)
EXPIRY = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    RECIPES: timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
}
# Compact JSON: the timestamp is fetched at every check over a metered link.
_SERIALIZER = JSONSerializer(compact=True)
_TYPES: dict[str, type] = {
    "root": Root,
    "targets": Targets,
    RECIPES: Targets,
    "snapshot": Snapshot,
    "timestamp": Timestamp,
}


class ReleaseError(Exception):
    """The operation cannot be done; the message says why and what to do."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def version_key(version: str) -> tuple:
    """Natural order of versions: 1.10 after 1.9."""
    return tuple(
        (0, int(p), "") if p.isascii() and p.isdigit() else (1, 0, p)
        for p in re.split(r"[._+]", version)
    )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Repository:
    """One repository directory. `keys` names the key directories at hand; `clock` gives
    the time expiries count from."""

    def __init__(
        self,
        path: Path,
        keys: k.KeyDirs | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        expiry: dict[str, timedelta] | None = None,
    ):
        self.path = Path(path)
        self.keys = keys or k.KeyDirs()
        self.clock = clock
        self.expiry = {**EXPIRY, **(expiry or {})}
        self.metadata_dir = self.path / "metadata"
        self.targets_dir = self.path / "targets"

    def exists(self) -> bool:
        return (self.metadata_dir / "root.json").is_file()

    # -- creating ------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: Path,
        keys: k.KeyDirs,
        *,
        clock: Callable[[], datetime] = utc_now,
        expiry: dict[str, timedelta] | None = None,
    ) -> Repository:
        """A new repository: a key for each role, version 1 of each role's metadata."""
        repo = cls(path, keys, clock=clock, expiry=expiry)
        if repo.exists():
            raise ReleaseError(f"{repo.path} already holds a repository; nothing was changed")
        for role in ROLES:
            if keys.file_for(role).exists():
                raise ReleaseError(
                    f"{keys.file_for(role)} exists already: use empty key directories "
                    "(an old key must never sign a new repository by accident)"
                )
        signers = {role: k.generate(keys, role) for role in ROLES}
        repo.targets_dir.mkdir(parents=True, exist_ok=True)
        root = Metadata(Root(expires=repo._expires("root")))
        for role in TOP_ROLES:
            root.signed.add_key(signers[role].public_key, role)
        recipes_key = signers[RECIPES].public_key
        targets = Metadata(Targets(expires=repo._expires("targets")))
        targets.signed.delegations = Delegations(
            keys={recipes_key.keyid: recipes_key},
            roles={
                RECIPES: DelegatedRole(
                    RECIPES, [recipes_key.keyid], 1, terminating=True, paths=[RECIPES_PATTERN]
                )
            },
        )
        made = {
            "root": root,
            "targets": targets,
            RECIPES: Metadata(Targets(expires=repo._expires(RECIPES))),
            "snapshot": Metadata(Snapshot(expires=repo._expires("snapshot"))),
            "timestamp": Metadata(Timestamp(expires=repo._expires("timestamp"))),
        }
        for role in ("root", "targets", RECIPES):
            made[role].sign(signers[role])
            repo._write(role, made[role])
        repo._write("snapshot", made["snapshot"])  # version 1 lists targets 1 and recipes 1
        repo._write("timestamp", made["timestamp"])
        repo._commit({}, bump=False, signers=signers)
        return repo

    # -- reading -------------------------------------------------------------------------

    def load(self, role: str) -> Metadata[Any]:
        if not self.exists():
            raise ReleaseError(
                f"no repository at {self.path}: run `kenshin release init` first, or pass --repo"
            )
        return Metadata.from_file(str(self.metadata_dir / f"{role}.json"))

    def targets(self, role: str = "targets") -> dict[str, TargetFile]:
        return dict(self.load(role).signed.targets)

    def releases(self) -> list[str]:
        found = (parse_release_path(p) for p in self.targets())
        return sorted((v for v in found if v), key=version_key)

    def target_file(self, target: TargetFile) -> Path:
        """Where a target's bytes are stored (the consistent-snapshot name)."""
        directory, _, name = target.path.rpartition("/")
        return self.targets_dir / directory / f"{target.hashes['sha256']}.{name}"

    def release_bytes(self, version: str) -> bytes:
        target = self.targets().get(release_path(version))
        if target is None:
            raise ReleaseError(
                f"release {version} is not in the repository (`kenshin release add`)"
            )
        return self.target_file(target).read_bytes()

    # -- publishing ----------------------------------------------------------------------

    def publish(
        self, entries: Iterable[tuple[str, bytes]], *, role: str = "targets", replace: bool = False
    ) -> list[TargetFile]:
        """Add targets (path, bytes) to `role` in one new version, signed with its key, and
        a new snapshot and timestamp. A path already published with other bytes is refused
        (a version is never changed behind the gateways' back) unless `replace`."""
        md = self.load(role)
        signer = self._signer(role)
        added = []
        for path, data in entries:
            if role == RECIPES and not (path.startswith("recipes/") and path.count("/") == 1):
                raise ReleaseError(f"{path}: the recipes key signs recipes/<name> only")
            target = TargetFile.from_data(path, data, ["sha256"])
            old = md.signed.targets.get(path)
            if old is not None and old.hashes != target.hashes and not replace:
                raise ReleaseError(
                    f"{path} is published already with other bytes: publish a new version"
                )
            _write_atomic(self.target_file(target), data)
            md.signed.targets[path] = target
            added.append(target)
        self._sign(role, md, signer)
        self._commit({role: md})
        return added

    def add_release(self, archive: Path, version: str) -> TargetFile:
        return self.publish([(release_path(version), Path(archive).read_bytes())])[0]

    def add_recipe(self, file: Path, name: str | None = None) -> TargetFile:
        """A recipe, signed with the recipes key (not the release key)."""
        path = recipe_path(name or Path(file).name)
        return self.publish([(path, Path(file).read_bytes())], role=RECIPES)[0]

    def sign(self, roles: Iterable[str] = ("targets",)) -> None:
        """A new version of each role in `roles`, signed afresh with a new expiry (e.g.
        before the targets expire), then a new snapshot and timestamp."""
        changed = {}
        for role in roles:
            if role not in ("root", "targets", RECIPES):
                raise ReleaseError(f"{role} is signed online: `kenshin release refresh-timestamp`")
            md = self.load(role)
            self._sign(role, md, self._signer(role))
            changed[role] = md
        self._commit(changed)

    def refresh_timestamp(self) -> Metadata[Timestamp]:
        """The online roles' renewal: a new timestamp, and a new snapshot when it would
        expire before the next two timestamps do. Needs only the online keys."""
        snapshot = self.load("snapshot").signed
        soon = self.clock() + 2 * self.expiry["timestamp"]
        if snapshot.expires <= soon:
            self._commit({})
        else:
            timestamp = self.load("timestamp")
            self._sign("timestamp", timestamp, self._signer("timestamp"))
            self._write("timestamp", timestamp)
        return self.load("timestamp")

    # -- keys ----------------------------------------------------------------------------

    def rotate_key(self, role: str) -> str:
        """Replace `role`'s key with a new one; returns the new key id.

        The root's new version names the new key and is signed by the root key (for root
        itself: by the old and the new key, so clients that trust the old root follow).
        The old key's file is moved aside; it need not exist (a lost key is rotated the
        same way), except the root's: without it no client would accept the new root."""
        if role not in ROLES:
            raise ReleaseError(f"no role {role!r}: one of {', '.join(ROLES)}")
        root = self.load("root")
        # Every key the rotation signs with is loaded before a file moves: a missing one
        # must leave the repository as it was, not with a new key nobody trusts.
        signers = {r: self._signer(r) for r in ("snapshot", "timestamp") if r != role}
        root_signer = self._signer("root") if role != RECIPES else None
        if role == RECIPES:
            targets = self.load("targets")
            targets_signer = self._signer("targets")
            old_ids = list(targets.signed.delegations.roles[RECIPES].keyids)
        else:
            old_ids = list(root.signed.roles[role].keyids)
        for keyid in old_ids:
            k.retire(self.keys, role, keyid)
        new = k.generate(self.keys, role)
        changed: dict[str, Metadata[Any]] = {}
        if role == RECIPES:
            for keyid in old_ids:
                targets.signed.revoke_key(keyid, RECIPES)
            targets.signed.add_key(new.public_key, RECIPES)
            self._sign("targets", targets, targets_signer)
            recipes = self.load(RECIPES)
            self._sign(RECIPES, recipes, new)
            changed = {"targets": targets, RECIPES: recipes}
        else:
            for keyid in old_ids:
                root.signed.revoke_key(keyid, role)
            root.signed.add_key(new.public_key, role)
            assert root_signer is not None
            self._sign("root", root, new if role == "root" else root_signer)
            if role == "root":
                root.sign(root_signer, append=True)
            changed["root"] = root
            if role == "targets":
                targets = self.load("targets")
                self._sign("targets", targets, new)
                changed["targets"] = targets
        self._commit(changed, signers={**signers, role: new})
        return new.public_key.keyid

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.clock()
        root = self.load("root").signed
        targets = self.load("targets").signed
        roles = {}
        for role in ROLES:
            signed = self.load(role).signed
            keyids = (
                targets.delegations.roles[RECIPES].keyids
                if role == RECIPES
                else root.roles[role].keyids
            )
            directory = self.keys.dir_for(role)
            roles[role] = {
                "version": signed.version,
                "expires": signed.expires.isoformat(),
                "expired": signed.is_expired(now),
                "expires_soon": not signed.is_expired(now)
                and signed.expires - now < max(self.expiry[role] / 4, timedelta(hours=6)),
                "keyids": list(keyids),
                "holder": k.HOLDER[role],
                "key_here": directory is not None and (directory / f"{role}.pem").is_file(),
            }
        paths = list(targets.targets)
        return {
            "repository": str(self.path),
            "roles": roles,
            "releases": self.releases(),
            "deltas": sorted("-".join(d) for p in paths if (d := parse_delta_path(p))),
            "recipes": sorted(p.partition("/")[2] for p in self.targets(RECIPES)),
        }

    # -- internals -----------------------------------------------------------------------

    def _expires(self, role: str) -> datetime:
        return (self.clock() + self.expiry[role]).replace(microsecond=0)

    def keyids(self, role: str) -> list[str]:
        """The key ids `role` must be signed by (the root's, or the delegation's)."""
        if role == RECIPES:
            return list(self.load("targets").signed.delegations.roles[RECIPES].keyids)
        return list(self.load("root").signed.roles[role].keyids)

    def _signer(self, role: str) -> Signer:
        try:
            return k.load_signer(self.keys, role, self.keyids(role))
        except k.KeyMissing as err:
            raise ReleaseError(str(err)) from None

    def _sign(self, role: str, md: Metadata[Any], signer: Signer) -> None:
        md.signed.version += 1
        md.signed.expires = self._expires(role)
        md.sign(signer)

    def _write(self, role: str, md: Metadata[Any]) -> None:
        data = md.to_bytes(_SERIALIZER)
        if role != "timestamp":
            _write_atomic(self.metadata_dir / f"{md.signed.version}.{role}.json", data)
        _write_atomic(self.metadata_dir / f"{role}.json", data)

    def _commit(
        self,
        changed: dict[str, Metadata[Any]],
        *,
        bump: bool = True,
        signers: dict[str, Signer] | None = None,
    ) -> None:
        """Write the changed roles, then a snapshot naming their versions, then the
        timestamp naming the snapshot (the online keys are loaded before anything is
        written, so a missing one changes nothing)."""
        signers = signers or {}
        online = {r: signers.get(r) or self._signer(r) for r in ("snapshot", "timestamp")}
        for role, md in changed.items():
            self._write(role, md)
        snapshot = self.load("snapshot")
        for role in ("targets", RECIPES):
            version = changed[role].signed.version if role in changed else None
            version = version or self.load(role).signed.version
            snapshot.signed.meta[f"{role}.json"] = MetaFile(version=version)
        if bump:
            self._sign("snapshot", snapshot, online["snapshot"])
        else:
            snapshot.sign(online["snapshot"])
        self._write("snapshot", snapshot)
        timestamp = self.load("timestamp")
        timestamp.signed.snapshot_meta = MetaFile(
            version=snapshot.signed.version, length=len(snapshot.to_bytes(_SERIALIZER))
        )
        if bump:
            self._sign("timestamp", timestamp, online["timestamp"])
        else:
            timestamp.sign(online["timestamp"])
        self._write("timestamp", timestamp)
