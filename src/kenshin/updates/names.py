"""The target names the repository and the gateways agree on.

A release is ``releases/<version>.tar`` (an uncompressed tar of the agent's files), a
delta ``deltas/<from>-<to>.bsdiff``, a recipe ``recipes/<name>``. A version is one to 64
characters of letters, digits, ``.``, ``_`` and ``+``, starting with a letter or digit:
no ``-`` (it separates a delta's two versions), no ``/`` and never ``..`` (a version
becomes a file name on both sides).
"""

from __future__ import annotations

import re

__all__ = [
    "RECIPES_PATTERN",
    "TargetNameError",
    "check_version",
    "delta_path",
    "parse_delta_path",
    "parse_release_path",
    "recipe_path",
    "release_path",
]

RELEASES = "releases/"
DELTAS = "deltas/"
RECIPES = "recipes/"
RECIPES_PATTERN = "recipes/*"  # the delegation's paths: one level, fnmatch-style
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+]{0,63}")
_RECIPE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,127}")


class TargetNameError(ValueError):
    """A version, recipe or target name that is not one of ours; the message says why."""


def check_version(version: str) -> str:
    if not _VERSION.fullmatch(version) or ".." in version:
        raise TargetNameError(
            f"{version!r} is not a release version: 1 to 64 letters, digits, '.', '_' or '+', "
            "starting with a letter or digit (e.g. 1.4.2)"
        )
    return version


def release_path(version: str) -> str:
    return f"{RELEASES}{check_version(version)}.tar"


def delta_path(base: str, version: str) -> str:
    return f"{DELTAS}{check_version(base)}-{check_version(version)}.bsdiff"


def recipe_path(name: str) -> str:
    if not _RECIPE.fullmatch(name) or ".." in name:
        raise TargetNameError(
            f"{name!r} is not a recipe name: 1 to 128 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit (e.g. pv-inverter-0.1.tar)"
        )
    return f"{RECIPES}{name}"


def parse_release_path(path: str) -> str | None:
    """The version of a release target's path, or None for any other path."""
    if not (path.startswith(RELEASES) and path.endswith(".tar")):
        return None
    try:
        return check_version(path[len(RELEASES) : -len(".tar")])
    except TargetNameError:
        return None


def parse_delta_path(path: str) -> tuple[str, str] | None:
    """(from, to) of a delta target's path, or None for any other path."""
    if not (path.startswith(DELTAS) and path.endswith(".bsdiff")):
        return None
    base, dash, version = path[len(DELTAS) : -len(".bsdiff")].partition("-")
    try:
        return (check_version(base), check_version(version)) if dash else None
    except TargetNameError:
        return None
