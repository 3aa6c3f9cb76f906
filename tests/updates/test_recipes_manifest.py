"""The recipe package and its manifest (`kenshin.updates.recipes`): strict parsing with
errors that name the field, the agent version range, and hypothesis round trips and fuzz
(only `RecipeInvalid` ever comes out of the parsers)."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin import __version__
from kenshin.updates.recipes import (
    CODE,
    MANIFEST,
    RecipeInvalid,
    RecipeNotForThisAgent,
    VersionRange,
    build_package,
    parse_manifest,
    read_package,
)

SHIPPED = Path(__file__).parents[2] / "recipes" / "pv-inverter"


def manifest(**changes: Any) -> dict[str, Any]:
    base = {
        "name": "pv-inverter",
        "version": "0.1",
        "agent": ">=0.1.0,<1",
        "echonet": [{"class": "0x0279", "get": ["0xE0", "0xE1"], "set": []}],
        "publish": ["pv"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def parse(value: Any) -> Any:
    return parse_manifest(json.dumps(value).encode())


def test_a_manifest_parses_into_its_permissions():
    parsed = parse(manifest())
    assert (parsed.name, parsed.version, str(parsed.agent)) == ("pv-inverter", "0.1", ">=0.1.0,<1")
    [pv] = parsed.echonet
    assert (pv.class_code, pv.get, pv.set) == (0x0279, {0xE0, 0xE1}, frozenset())
    assert parsed.permission(0x0288) is None and parsed.publish == {"pv"}


def test_the_shipped_recipe_parses_and_fits_this_agent():
    data = build_package((SHIPPED / MANIFEST).read_bytes(), (SHIPPED / CODE).read_bytes())
    recipe = read_package(data, "pv-inverter")
    recipe.manifest.check_agent(__version__)
    assert "async def run(ctx)" in recipe.code
    assert build_package((SHIPPED / MANIFEST).read_bytes(), (SHIPPED / CODE).read_bytes()) == data


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (manifest(extra=1), "unknown key 'extra'"),
        (manifest(publish=...), "'publish' is missing"),
        (manifest(name="../etc"), "not a recipe name"),
        (manifest(version="1-2"), "not a release version"),
        (manifest(agent=">=1.0;<2"), "is not a clause"),
        (manifest(agent=""), "expected a version range"),
        (manifest(echonet=[{"class": "0x279", "get": ["0xE0"]}]), "echonet[0].class"),
        (manifest(echonet=[{"class": "0x0279", "get": ["0x10"]}]), "EPCs are 0x80..0xFF"),
        (manifest(echonet=[{"class": "0x0279", "get": ["0xE0", "0xe0"]}]), "listed twice"),
        (manifest(echonet=[{"class": "0x0279"}]), "grants nothing"),
        (manifest(echonet=[{"class": "0x0279", "get": "0xE0"}]), "expected a list"),
        (manifest(echonet=[{"class": "0x0279", "get": ["0xE0"], "put": []}]), "unknown key"),
        (
            manifest(echonet=[{"class": "0x0279", "get": ["0xE0"]}] * 2),
            "class 0x0279 twice",
        ),
        (manifest(publish=["PV"]), "not a new series name"),
        (manifest(publish=["pv", "pv"]), "not a new series name"),
        (manifest(publish=[f"s{i}" for i in range(17)]), "at most 16"),
        ([1, 2], "expected an object"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_field(value: Any, says: str):
    with pytest.raises(RecipeInvalid) as caught:
        parse(value)
    assert says in caught.value.what
    assert "sign the recipe again" in caught.value.next_step


def test_not_json_or_too_large_is_refused():
    with pytest.raises(RecipeInvalid, match="not UTF-8 JSON"):
        parse_manifest(b"\xff{")
    with pytest.raises(RecipeInvalid, match="at most 16384"):
        parse_manifest(b" " * 20_000)


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        (">=0.1.0,<1", ["0.1.0", "0.9.9", "0.1.0+dev"], ["0.0.9", "1.0", "2"]),
        ("==0.1", ["0.1.0", "0.1"], ["0.1.1"]),
        (">0.1, !=0.3, <=0.4", ["0.2", "0.4.0"], ["0.1", "0.3", "0.4.1"]),
    ],
)
def test_the_agent_range(spec: str, inside: list[str], outside: list[str]):
    agent = VersionRange.parse(spec)
    assert all(v in agent for v in inside)
    assert not any(v in agent for v in outside)
    with pytest.raises(RecipeNotForThisAgent, match="update the gateway first"):
        parse(manifest(agent=spec)).check_agent(outside[0])


def tar_of(members: list[tuple[str, bytes, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return out.getvalue()


GOOD = json.dumps(manifest()).encode()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not a tar at all" * 40, "not a tar"),
        (tar_of([(MANIFEST, tarfile.REGTYPE, GOOD)]), "has no recipe.py"),
        (tar_of([(MANIFEST, tarfile.REGTYPE, GOOD), ("x.py", tarfile.REGTYPE, b"")]), "'x.py'"),
        (tar_of([(MANIFEST, tarfile.REGTYPE, GOOD)] * 2), "once each"),
        (tar_of([(MANIFEST, tarfile.SYMTYPE, b""), (CODE, tarfile.REGTYPE, b"")]), "regular"),
        (tar_of([(MANIFEST, tarfile.REGTYPE, GOOD), (CODE, tarfile.REGTYPE, b"\xff")]), "UTF-8"),
        (build_package(manifest(name="battery"), "async def run(ctx): pass"), "published as"),
    ],
)
def test_a_malformed_package_is_refused(data: bytes, says: str):
    with pytest.raises(RecipeInvalid) as caught:
        read_package(data, "pv-inverter")
    assert says in caught.value.what


# -- hypothesis ------------------------------------------------------------------------------

hexes = st.integers(0x80, 0xFF)
series = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
permissions = st.lists(
    st.tuples(
        st.integers(0, 0xFFFF),
        st.frozensets(hexes, max_size=8),
        st.frozensets(hexes, max_size=8),
    ).filter(lambda p: p[1] or p[2]),
    max_size=6,
    unique_by=lambda p: p[0],
)
manifests = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,40}", fullmatch=True).filter(
            lambda n: ".." not in n
        ),
        "version": st.from_regex(r"[0-9][0-9.]{0,10}", fullmatch=True).filter(
            lambda v: ".." not in v
        ),
        "agent": st.lists(
            st.tuples(
                st.sampled_from([">=", ">", "<=", "<", "==", "!="]),
                st.lists(st.integers(0, 999), min_size=1, max_size=4),
            ),
            min_size=1,
            max_size=3,
        ).map(lambda cs: ",".join(op + ".".join(map(str, v)) for op, v in cs)),
        "echonet": permissions.map(
            lambda ps: [
                {
                    "class": f"0x{c:04X}",
                    "get": [f"0x{e:02X}" for e in sorted(g)],
                    "set": [f"0x{e:02x}" for e in sorted(s)],
                }
                for c, g, s in ps
            ]
        ),
        "publish": st.lists(series, max_size=16, unique=True),
    }
)


@given(manifests)
def test_every_wellformed_manifest_round_trips(value: dict[str, Any]):
    parsed = parse(value)
    assert (parsed.name, parsed.version, str(parsed.agent)) == (
        value["name"],
        value["version"],
        value["agent"],
    )
    assert parsed.publish == set(value["publish"])
    for entry, permission in zip(value["echonet"], parsed.echonet, strict=True):
        assert permission.class_code == int(entry["class"], 16)
        assert permission.get == {int(e, 16) for e in entry["get"]}
        assert permission.set == {int(e, 16) for e in entry["set"]}
    package = build_package(value, "async def run(ctx):\n    pass\n")
    assert read_package(package, value["name"]).manifest == parsed


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@given(st.binary(max_size=400))
def test_any_bytes_give_a_manifest_or_recipe_invalid(data: bytes):
    with contextlib.suppress(RecipeInvalid):
        parse_manifest(data)


@given(manifests, st.sampled_from(["name", "version", "agent", "echonet", "publish"]), json_values)
def test_any_value_in_any_field_gives_a_manifest_or_recipe_invalid(value, key, replacement):
    value = dict(value, **{key: replacement})
    with contextlib.suppress(RecipeInvalid):
        parse(value)


@given(st.binary(max_size=2048), st.integers(0, 4096), st.integers(0, 255))
def test_any_package_bytes_give_a_recipe_or_recipe_invalid(noise: bytes, at: int, byte: int):
    package = bytearray(build_package(manifest(), "async def run(ctx): pass\n"))
    package[at % len(package)] = byte
    for data in (noise, bytes(package)):
        with contextlib.suppress(RecipeInvalid):
            read_package(data, "pv-inverter")
