"""The gateway's side: releases and recipes fetched and verified with `tuf.ngclient`.

Trust starts from the initial root (a file the gateway was installed with) and grows
only through metadata the ngclient verified: every root since, each signed by its
predecessor's keys. The verified metadata is kept in ``<state_dir>/tuf`` across restarts:
rollback and freeze protection depend on it (a gateway that forgot which versions it has
seen would accept an older, replayed state). Downloads land in ``<state_dir>/downloads``.

`fetch_release(version, have=...)` takes the delta from the installed archive when the
repository has one from it (the installed archive's bytes must be a signed release's),
the full release otherwise; either way the bytes returned match the release's signed
hash. A delta that fails is refused and, unless ``fallback=False``, the full release is
taken instead. Errors are `UpdateRefused` (something did not verify: keep the installed
version) and `UpdateUnavailable` (nothing to verify: try later); each says what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from . import deltas
from .names import delta_path, parse_delta_path, recipe_path, release_path

__all__ = ["Fetched", "UpdateClient", "UpdateError", "UpdateRefused", "UpdateUnavailable"]

KEEP = "keep the installed version"


class UpdateError(Exception):
    """An update that did not happen: `reason` (a word), what went wrong, what to do."""

    def __init__(self, reason: str, what: str, next_step: str):
        super().__init__(f"{what}: {next_step}")
        self.reason, self.what, self.next_step = reason, what, next_step


class UpdateRefused(UpdateError):
    """Something did not verify (an attack, a broken mirror, or a repository gone stale).
    Reasons: expired, rollback, signature, hash, metadata, delta, delegation."""


class UpdateUnavailable(UpdateError):
    """Nothing could be verified: the server is unreachable or the release not published.
    Reasons: download, not-published."""


_HASH_NEXT = (
    f"the downloaded bytes are not what the repository signed; {KEEP}, try again later "
    "and report it if it repeats"
)
_REFUSALS: list[tuple[type[Exception], str, str]] = [
    (
        tuf_errors.ExpiredMetadataError,
        "expired",
        f"the server may be replaying old metadata (a freeze attack), or the operator "
        f"has not run `kenshin release refresh-timestamp`; {KEEP} and report it",
    ),
    (
        tuf_errors.BadVersionNumberError,
        "rollback",
        f"the server offered an older version of the metadata than this gateway has seen "
        f"(a rollback attack or a restored backup); {KEEP} and report it",
    ),
    (
        tuf_errors.UnsignedMetadataError,
        "signature",
        f"metadata is not signed by the keys this gateway trusts; {KEEP} and report it",
    ),
    (
        tuf_errors.LengthOrHashMismatchError,
        "hash",
        _HASH_NEXT,
    ),
    (
        tuf_errors.RepositoryError,
        "metadata",
        f"the repository's metadata does not verify; {KEEP} and report it",
    ),
]


@contextlib.contextmanager
def _verifying(what: str) -> Iterator[None]:
    """TUF's errors as ours, each with what to do next."""
    try:
        yield
    except tuf_errors.DownloadLengthMismatchError as err:  # more bytes than were signed
        raise UpdateRefused("hash", f"{what}: {err}", _HASH_NEXT) from err
    except (tuf_errors.DownloadError, urllib3.exceptions.HTTPError) as err:
        # ngclient's fetcher lets urllib3's own errors through (no connection, TLS refused)
        raise UpdateUnavailable(
            "download", f"{what}: {err}", "check the link to the server and try again later"
        ) from err
    except tuf_errors.RepositoryError as err:
        for kind, reason, next_step in _REFUSALS:
            if isinstance(err, kind):
                raise UpdateRefused(reason, f"{what}: {err}", next_step) from err
        raise  # not reached: RepositoryError is the last entry


@dataclass(frozen=True)
class Fetched:
    """A verified release archive at `path`: `via` "delta" from release `base`, or "full"."""

    version: str
    path: Path
    via: Literal["delta", "full"]
    base: str | None = None
    delta_refused: str | None = None  # why a delta was tried and refused, if it was


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as out:
        out.write(data)
    os.replace(out.name, path)


class UpdateClient:
    """Updates from the server at `base_url` (its ``/updates`` prefix), trusting
    `initial_root` and what verified since, kept in `state_dir`."""

    def __init__(
        self,
        base_url: str,
        state_dir: Path,
        initial_root: Path,
        *,
        fetcher: FetcherInterface | None = None,
        config: UpdaterConfig | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.metadata_dir = Path(state_dir) / "tuf"
        self.downloads = Path(state_dir) / "downloads"
        self.initial_root = Path(initial_root)
        self.fetcher, self.config = fetcher, config
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.downloads.mkdir(parents=True, exist_ok=True)

    def refresh(self) -> Updater:
        """A new ngclient Updater (each refreshes once), its top-level metadata verified."""
        try:
            bootstrap = self.initial_root.read_bytes()
        except OSError as err:
            raise UpdateRefused(
                "metadata",
                f"cannot read the initial root {self.initial_root}: {err}",
                "reinstall the gateway's identity files; no update without a trusted root",
            ) from err
        with _verifying("the initial root"):
            updater = Updater(
                metadata_dir=str(self.metadata_dir),
                metadata_base_url=f"{self.base_url}/metadata/",
                target_base_url=f"{self.base_url}/targets/",
                target_dir=str(self.downloads),
                fetcher=self.fetcher,
                config=self.config,
                bootstrap=bootstrap,
            )
        with _verifying("refreshing the update metadata"):
            updater.refresh()
        return updater

    def fetch_release(
        self, version: str, have: Path | None = None, *, fallback: bool = True
    ) -> Fetched:
        """Release `version`, verified, as a file in the downloads directory. `have`: the
        installed release archive, the base for a delta."""
        path = release_path(version)
        updater = self.refresh()
        with _verifying(f"looking up release {version}"):
            release = updater.get_targetinfo(path)
        if release is None:
            raise UpdateUnavailable(
                "not-published",
                f"release {version} is not signed by this repository's release key",
                f"check the version (`kenshin release status` on the operator's side); {KEEP}",
            )
        out = self.downloads / f"{version}.tar"
        refused = None
        if have is not None:
            base = self._base_of(updater, Path(have), version)
            if base is not None:
                try:
                    _write_atomic(out, self._via_delta(updater, Path(have), base, release))
                    return Fetched(version, out, "delta", base=base)
                except UpdateRefused as err:
                    if not fallback:
                        raise
                    refused = str(err)
        with _verifying(f"downloading release {version}"):
            updater.download_target(release, filepath=str(out))
        return Fetched(version, out, "full", delta_refused=refused)

    def fetch_recipe(self, name: str) -> Path:
        """Recipe `name`, verified against the recipes role's signature and delegation;
        one the top-level targets role (the release key) lists itself is refused."""
        updater = self.refresh()
        path = recipe_path(name)
        try:  # what the updater just verified and stored
            top = Metadata.from_file(str(self.metadata_dir / "targets.json")).signed.targets
        except (OSError, ValueError, tuf_errors.RepositoryError) as err:
            raise UpdateRefused("metadata", f"reading the verified targets: {err}", KEEP) from err
        if path in top:  # ngclient would take the top-level entry before the delegation's
            raise UpdateRefused(
                "delegation",
                f"recipe {name} is signed by the release key, not by the recipes role",
                "recipes are signed by their authors' recipes key only; the gateway runs "
                "without it; report it to the operator",
            )
        with _verifying(f"looking up recipe {name}"):
            recipe = updater.get_targetinfo(path)
        if recipe is None:
            raise UpdateUnavailable(
                "not-published",
                f"recipe {name} is not signed by the recipes key",
                "check the name with the recipe's author; the gateway runs without it",
            )
        with _verifying(f"downloading recipe {name}"):
            return Path(updater.download_target(recipe))

    def _base_of(self, updater: Updater, have: Path, version: str) -> str | None:
        """The release `have` holds, among those with a delta to `version`, or None.

        Candidates come from the targets metadata the updater just verified and stored;
        each one's hash is then taken from the updater itself."""
        try:
            listed = Metadata.from_file(str(self.metadata_dir / "targets.json")).signed.targets
            have_sha = _sha256(have)
        except (OSError, ValueError, tuf_errors.RepositoryError):
            return None
        for path in listed:
            pair = parse_delta_path(path)
            if pair is None or pair[1] != version:
                continue
            with _verifying(f"looking up release {pair[0]}"):
                base = updater.get_targetinfo(release_path(pair[0]))
            if base is not None and base.hashes.get("sha256") == have_sha:
                return pair[0]
        return None

    def _via_delta(self, updater: Updater, have: Path, base: str, release: TargetFile) -> bytes:
        version = release.path.removeprefix("releases/").removesuffix(".tar")
        with _verifying(f"looking up the delta {base}→{version}"):
            info = updater.get_targetinfo(delta_path(base, version))
        if info is None:  # listed a moment ago: the repository changed in between
            raise UpdateRefused("delta", f"the delta {base}→{version} vanished", "take the full")
        with tempfile.TemporaryDirectory(dir=self.downloads) as scratch:
            delta_file = Path(scratch) / "delta"
            with _verifying(f"downloading the delta {base}→{version}"):
                updater.download_target(info, filepath=str(delta_file))
            try:
                return deltas.apply(have.read_bytes(), delta_file.read_bytes(), release)
            except deltas.DeltaRefused as err:
                raise UpdateRefused(
                    "delta", str(err), f"take the full release; {KEEP} until then"
                ) from err
