"""Recipes: signed add-ons a gateway runs beside the agent, and their manifests.

A recipe is the TUF target ``recipes/<name>``, signed by the ``recipes`` role (the
delegation limits that role to ``recipes/*``; the release key never signs one). Its bytes
are an uncompressed tar of exactly two regular files:

- ``manifest.json``: what the recipe is and what it may do (`Manifest`)::

      {"name": "pv-inverter", "version": "0.1",
       "agent": ">=0.1.0,<1",
       "echonet": [{"class": "0x0279", "get": ["0xE0", "0xE1"], "set": []}],
       "publish": ["pv"]}

  ``agent`` is the range of agent versions it fits (clauses ``>=``, ``>``, ``<=``, ``<``,
  ``==``, ``!=`` on dotted numbers, joined by commas); ``echonet`` the ECHONET Lite
  classes (EOJ class codes, ``0x`` and four hex digits) with the EPCs (``0x80``..``0xFF``)
  it may Get and Set on them; ``publish`` the series it may send to the server.
- ``recipe.py``: the code, one module whose entry point is
  ``async def run(ctx) -> None``: it runs until cancelled and reaches the world only
  through ``ctx`` (the gateway's `RecipeContext`, which refuses what the manifest does not
  declare).

Parsing is strict: unknown keys, wrong types, duplicates, out-of-range codes and oversized
files are `RecipeInvalid`, each message naming the field and what to do. This module is
sans-I/O apart from `build_package` (bytes in, values out) and imports no other part of
kenshin but `updates`: which permissions a gateway grants is the gateway's own policy.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass
from typing import Any

from .names import TargetNameError, check_version, recipe_path

__all__ = [
    "CODE",
    "MANIFEST",
    "EchonetPermission",
    "Manifest",
    "Recipe",
    "RecipeError",
    "RecipeInvalid",
    "RecipeNotForThisAgent",
    "VersionRange",
    "build_package",
    "parse_manifest",
    "read_package",
]

MANIFEST = "manifest.json"
CODE = "recipe.py"
MAX_MANIFEST_BYTES = 16 * 1024
MAX_CODE_BYTES = 256 * 1024
MAX_CLASSES = 16
MAX_SERIES = 16
_SERIES = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CLASS = re.compile(r"0x[0-9A-Fa-f]{4}")
_EPC = re.compile(r"0x[0-9A-Fa-f]{2}")
_CLAUSE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([0-9]{1,6}(?:\.[0-9]{1,6}){0,3})\s*")
_FIX = "fix the manifest and sign the recipe again (`kenshin release add-recipe`)"


class RecipeError(Exception):
    """A recipe that will not run: `reason` (a word), what went wrong, what to do."""

    def __init__(self, reason: str, what: str, next_step: str):
        super().__init__(f"{what}: {next_step}")
        self.reason, self.what, self.next_step = reason, what, next_step


class RecipeInvalid(RecipeError):
    """The package or its manifest is malformed (reason "invalid")."""

    def __init__(self, what: str, next_step: str = _FIX):
        super().__init__("invalid", what, next_step)


class RecipeNotForThisAgent(RecipeError):
    """The manifest's agent range excludes the running agent (reason "agent-version")."""


def _numbers(version: str) -> tuple[int, ...]:
    """0.1.0 as (0, 1, 0, 0); a local part (+dev) and a non-numeric tail are ignored."""
    parts = []
    for part in version.split("+", 1)[0].split(".")[:4]:
        digits = re.match(r"[0-9]*", part).group()
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts + [0] * (4 - len(parts)))


_COMPARE = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class VersionRange:
    """The agent versions a recipe fits: every clause must hold."""

    clauses: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: Any) -> VersionRange:
        if not isinstance(text, str) or not text.strip() or len(text) > 200:
            raise RecipeInvalid(
                f"agent: expected a version range such as '>=0.1.0,<1', got {text!r}"
            )
        clauses = []
        for clause in text.split(","):
            match = _CLAUSE.fullmatch(clause)
            if match is None:
                raise RecipeInvalid(
                    f"agent: {clause.strip()!r} is not a clause: an operator (>=, >, <=, <, "
                    "==, !=) and a dotted version of up to four numbers, e.g. '>=0.1.0,<1'"
                )
            clauses.append((match.group(1), match.group(2)))
        return cls(tuple(clauses))

    def __contains__(self, version: str) -> bool:
        have = _numbers(version)
        return all(_COMPARE[op](have, _numbers(bound)) for op, bound in self.clauses)

    def __str__(self) -> str:
        return ",".join(f"{op}{bound}" for op, bound in self.clauses)


@dataclass(frozen=True)
class EchonetPermission:
    """One ECHONET Lite class a recipe may reach, and the EPCs it may Get and Set."""

    class_code: int
    get: frozenset[int]
    set: frozenset[int]


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    agent: VersionRange
    echonet: tuple[EchonetPermission, ...]
    publish: frozenset[str]

    def permission(self, class_code: int) -> EchonetPermission | None:
        return next((p for p in self.echonet if p.class_code == class_code), None)

    def check_agent(self, agent_version: str) -> None:
        if agent_version not in self.agent:
            raise RecipeNotForThisAgent(
                "agent-version",
                f"recipe {self.name} {self.version} fits agents {self.agent}, "
                f"not this one ({agent_version})",
                "publish a recipe version for this agent, or update the gateway first",
            )


@dataclass(frozen=True)
class Recipe:
    """A verified package, parsed: its manifest and its code (not yet run)."""

    manifest: Manifest
    code: str


def _object(value: Any, where: str, keys: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecipeInvalid(f"{where}: expected an object, got {type(value).__name__}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise RecipeInvalid(f"{where}: unknown key {unknown[0]!r} (known: {sorted(keys)})")
    missing = sorted(required - set(value))
    if missing:
        raise RecipeInvalid(f"{where}: {missing[0]!r} is missing")
    return value


def _list(value: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise RecipeInvalid(f"{where}: expected a list, got {type(value).__name__}")
    if len(value) > limit:
        raise RecipeInvalid(f"{where}: at most {limit} entries, got {len(value)}")
    return value


def _code(value: Any, where: str, pattern: re.Pattern[str], example: str) -> int:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RecipeInvalid(f"{where}: expected a hex code like {example!r}, got {value!r}")
    return int(value, 16)


def _epcs(value: Any, where: str) -> frozenset[int]:
    epcs = []
    for i, item in enumerate(_list(value, where, 128)):
        epc = _code(item, f"{where}[{i}]", _EPC, "0xE0")
        if epc < 0x80:
            raise RecipeInvalid(f"{where}[{i}]: EPCs are 0x80..0xFF, got {item!r}")
        if epc in epcs:
            raise RecipeInvalid(f"{where}[{i}]: {item!r} is listed twice")
        epcs.append(epc)
    return frozenset(epcs)


def _permission(value: Any, where: str) -> EchonetPermission:
    entry = _object(value, where, {"class", "get", "set"}, {"class"})
    class_code = _code(entry["class"], f"{where}.class", _CLASS, "0x0279")
    get = _epcs(entry.get("get", []), f"{where}.get")
    set_ = _epcs(entry.get("set", []), f"{where}.set")
    if not get and not set_:
        raise RecipeInvalid(f"{where}: a class with no EPC to Get or Set grants nothing")
    return EchonetPermission(class_code, get, set_)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RecipeInvalid(f"{where}: expected text, got {type(value).__name__}")
    return value


def parse_manifest(data: bytes) -> Manifest:
    """The manifest in `data` (UTF-8 JSON), checked strictly; `RecipeInvalid` otherwise."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise RecipeInvalid(f"{MANIFEST}: {len(data)} bytes, at most {MAX_MANIFEST_BYTES}")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise RecipeInvalid(f"{MANIFEST} is not UTF-8 JSON: {err}") from None
    keys = {"name", "version", "agent", "echonet", "publish"}
    raw = _object(raw, MANIFEST, keys, keys)
    name = _text(raw["name"], "name")
    try:
        recipe_path(name)
        version = check_version(_text(raw["version"], "version"))
    except TargetNameError as err:
        raise RecipeInvalid(str(err)) from None
    echonet = []
    for i, item in enumerate(_list(raw["echonet"], "echonet", MAX_CLASSES)):
        permission = _permission(item, f"echonet[{i}]")
        if any(p.class_code == permission.class_code for p in echonet):
            raise RecipeInvalid(f"echonet[{i}]: class 0x{permission.class_code:04X} twice")
        echonet.append(permission)
    publish = []
    for i, item in enumerate(_list(raw["publish"], "publish", MAX_SERIES)):
        if not isinstance(item, str) or not _SERIES.fullmatch(item) or item in publish:
            raise RecipeInvalid(
                f"publish[{i}]: {item!r} is not a new series name (a lower-case letter, "
                "then up to 31 lower-case letters, digits or '_')"
            )
        publish.append(item)
    return Manifest(
        name, version, VersionRange.parse(raw["agent"]), tuple(echonet), frozenset(publish)
    )


def read_package(data: bytes, name: str | None) -> Recipe:
    """The recipe in `data` (the verified target ``recipes/<name>``): a tar of exactly
    the manifest and the code, the manifest's name `name` (None: an author's package,
    whatever its name)."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if member.name not in (MANIFEST, CODE) or member.name in members:
                    raise RecipeInvalid(
                        f"the package holds {member.name!r}: only {MANIFEST} and {CODE}, once each",
                        "build it with kenshin.updates.recipes.build_package",
                    )
                limit = MAX_MANIFEST_BYTES if member.name == MANIFEST else MAX_CODE_BYTES
                if not member.isfile() or member.size > limit:
                    raise RecipeInvalid(
                        f"{member.name}: not a regular file of at most {limit} bytes"
                    )
                members[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        if isinstance(err, RecipeInvalid):
            raise
        raise RecipeInvalid(f"the package is not a tar: {err}") from None
    for needed in (MANIFEST, CODE):
        if needed not in members:
            raise RecipeInvalid(f"the package has no {needed}")
    manifest = parse_manifest(members[MANIFEST])
    if name is not None and manifest.name != name:
        raise RecipeInvalid(
            f"the manifest names {manifest.name!r}, but it was published as {name!r}",
            "publish it under the manifest's name",
        )
    try:
        code = members[CODE].decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecipeInvalid(f"{CODE} is not UTF-8: {err}") from None
    return Recipe(manifest, code)


def build_package(manifest: dict[str, Any] | bytes, code: str | bytes) -> bytes:
    """An author's package from a manifest and the code, byte for byte the same from the
    same input (no times, owners or modes of the author's machine)."""
    files = {
        MANIFEST: manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode(),
        CODE: code.encode() if isinstance(code, str) else code,
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
