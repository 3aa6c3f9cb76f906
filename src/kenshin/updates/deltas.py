"""Binary deltas between release archives (bsdiff4), each published as its own target.

A patch release over a cellular link should cost kilobytes, not the whole archive: the
archives are uncompressed tars with fixed mtimes and owners, so an unchanged file is the
same bytes in both and bsdiff's output (itself bzip2-compressed) is about the changed
module's size. A delta ``deltas/<from>-<to>.bsdiff`` is signed by the targets key like
the release; the gateway checks the delta's own hash when it downloads it (TUF), and the
patched result against the *full* release's signed length and hash before accepting it
(`apply`): a delta made from other bytes, or a bug in either side's bsdiff, is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

import bsdiff4
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import TargetFile

from .names import delta_path
from .repository import ReleaseError, Repository, version_key

__all__ = ["DeltaRefused", "apply", "make", "publish_deltas"]

DEFAULT_BASES = 3  # deltas from this many earlier releases: the fleet's usual stragglers


class DeltaRefused(Exception):
    """A delta that does not patch the base into the signed release."""


def make(base: bytes, version: bytes) -> bytes:
    return bsdiff4.diff(base, version)


def apply(base: bytes, delta: bytes, release: TargetFile) -> bytes:
    """The release's bytes from `base` and `delta`, checked against the release's signed
    length and hashes; DeltaRefused otherwise."""
    try:
        result = bsdiff4.patch(base, delta)
    except Exception as err:  # bsdiff4 raises ValueError, RuntimeError, ... on bad input
        raise DeltaRefused(f"the delta does not apply to the installed archive: {err}") from None
    try:
        release.verify_length_and_hashes(result)
    except LengthOrHashMismatchError:
        raise DeltaRefused(
            f"the patched archive does not match {release.path}'s signed hash"
        ) from None
    return result


def publish_deltas(
    repo: Repository,
    version: str,
    bases: Iterable[str] | None = None,
    *,
    last: int = DEFAULT_BASES,
) -> list[TargetFile]:
    """Deltas to `version` from `bases` (default: the `last` releases before it), signed
    and published in one new targets version. Each is checked by applying it first."""
    releases = repo.releases()
    if version not in releases:
        raise ReleaseError(f"release {version} is not in the repository: `kenshin release add`")
    if bases is None:
        earlier = [v for v in releases if version_key(v) < version_key(version)]
        bases = earlier[-last:] if last > 0 else []
    bases = list(bases)
    if not bases:
        raise ReleaseError(f"no earlier release than {version} to make a delta from")
    target = repo.targets()[f"releases/{version}.tar"]
    new = repo.release_bytes(version)
    entries = []
    for base in bases:
        if base == version:
            raise ReleaseError("a delta from a release to itself is nothing to publish")
        delta = make(repo.release_bytes(base), new)
        apply(repo.release_bytes(base), delta, target)  # never publish a delta that fails
        entries.append((delta_path(base, version), delta))
    return repo.publish(entries, replace=True)
