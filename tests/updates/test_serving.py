"""The server serves the repository read-only, and nothing beside it; the names both sides
parse are checked with hypothesis."""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from kenshin.server.api.updates import resolve_inside
from kenshin.updates.names import (
    TargetNameError,
    check_version,
    delta_path,
    parse_delta_path,
    parse_release_path,
    recipe_path,
    release_path,
)

from .conftest import World


def get(world: World, raw_path: str) -> tuple[int, bytes, http.client.HTTPResponse]:
    """A GET with `raw_path` exactly as written (no client-side normalising of `..`)."""
    url = urlsplit(world.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", raw_path)
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def test_metadata_and_targets_are_served_with_their_caching(world: World):
    world.release("1.0")
    status, body, response = get(world, "/updates/metadata/1.root.json")
    assert status == 200 and body == world.served("1.root.json").read_bytes()
    assert "immutable" in response.headers["cache-control"]
    status, _, response = get(world, "/updates/metadata/timestamp.json")
    assert status == 200 and response.headers["cache-control"] == "no-cache"
    target = world.repo.targets()["releases/1.0.tar"]
    name = world.repo.target_file(target).name
    status, body, _ = get(world, f"/updates/targets/releases/{name}")
    assert status == 200 and len(body) == target.length


def test_no_path_escapes_the_repository(world: World):
    secret = world.tmp / "secret.txt"  # beside the repository, as the server's own files are
    secret.write_text("SECRET")
    os.symlink(secret, world.served("link.json"))
    os.symlink(world.served("1.root.json"), world.served("inside.json"))
    os.symlink(world.tmp, world.repo.targets_dir / "up")
    for path in (
        "/updates/metadata/../../secret.txt",
        "/updates/metadata/../../offline/root.pem",
        "/updates/metadata/%2e%2e/%2e%2e/secret.txt",
        "/updates/metadata/%2e%2e/%2e%2e/offline/root.pem",
        "/updates/metadata/..%2f..%2fsecret.txt",
        "/updates/targets//etc/passwd",
        "/updates/targets/%2Fetc%2Fpasswd",
        f"/updates/targets/{secret}",
        "/updates/metadata/link.json",
        "/updates/metadata/inside.json",  # a symlink, even one that stays inside
        "/updates/targets/up/secret.txt",
        "/updates/metadata/..\\..\\secret.txt",
        "/updates/metadata/",
        "/updates/metadata/./1.root.json",
        "/updates/keys/1.root.json",
        "/updates/metadata/nothing.json",
    ):
        status, body, _ = get(world, path)
        assert status in (400, 404, 422), (path, status)
        assert b"SECRET" not in body and b"PRIVATE KEY" not in body


@given(st.text(max_size=40))
def test_resolve_inside_returns_only_plain_files_inside(tmp_path_factory, relative: str):
    base = _tree(tmp_path_factory)
    found = resolve_inside(base / "metadata", relative)
    if found is not None:
        assert found.is_file() and not found.is_symlink()
        assert found.resolve().is_relative_to((base / "metadata").resolve())


@given(st.lists(st.sampled_from(["..", ".", "", "a.json", "sub", "link", "/", "x"]), max_size=6))
def test_resolve_inside_refuses_every_dot_and_link_combination(tmp_path_factory, parts):
    base = _tree(tmp_path_factory)
    relative = "/".join(parts)
    found = resolve_inside(base / "metadata", relative)
    assert found is None or relative in ("a.json", "sub/a.json")


_TREES: dict[int, Path] = {}


def _tree(factory) -> Path:
    """metadata/a.json, metadata/sub/a.json, metadata/link -> .., outside.json beside."""
    key = id(factory)
    if key not in _TREES:
        base = factory.mktemp("tree")
        (base / "metadata" / "sub").mkdir(parents=True)
        (base / "metadata" / "a.json").write_text("{}")
        (base / "metadata" / "sub" / "a.json").write_text("{}")
        (base / "outside.json").write_text("secret")
        os.symlink(base, base / "metadata" / "link")
        _TREES[key] = base
    return _TREES[key]


VERSIONS = st.from_regex(r"[0-9A-Za-z][0-9A-Za-z._+]{0,20}", fullmatch=True).filter(
    lambda v: ".." not in v
)


@given(VERSIONS, VERSIONS)
def test_release_and_delta_names_round_trip(base: str, version: str):
    assert parse_release_path(release_path(version)) == version
    assert parse_delta_path(delta_path(base, version)) == (base, version)
    assert parse_delta_path(release_path(version)) is None
    assert parse_release_path(delta_path(base, version)) is None


@given(st.text(max_size=80))
def test_any_text_is_a_name_or_a_name_error(text: str):
    for parse in (parse_release_path, parse_delta_path):
        parse(text)  # None or a value, never an exception
    for check in (check_version, recipe_path):
        try:
            made = check(text)
        except TargetNameError:
            continue
        assert "/" not in made.removeprefix("recipes/") and ".." not in made
