"""Releases published with python-tuf, fetched by the gateway's ngclient over real HTTP."""

from __future__ import annotations

import hashlib
import json

import pytest

from kenshin.ports import free_tcp_port
from kenshin.updates import deltas
from kenshin.updates.client import UpdateUnavailable
from kenshin.updates.repository import ReleaseError, Repository

from .conftest import World, archive


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_gateway_holding_v1_takes_v2_as_a_delta_and_others_take_it_whole(world: World):
    world.release("1.0.0")
    v2 = world.release("1.0.1")
    signed = world.repo.targets()["releases/1.0.1.tar"]
    assert signed.hashes["sha256"] == sha256(v2)
    delta = world.repo.targets()["deltas/1.0.0-1.0.1.bsdiff"]
    assert delta.length < signed.length / 4  # one module changed: a small delta

    fetched = world.client("holds-v1").fetch_release("1.0.1", have=world.installed("1.0.0"))
    assert (fetched.via, fetched.base, fetched.delta_refused) == ("delta", "1.0.0", None)
    assert sha256(fetched.path.read_bytes()) == signed.hashes["sha256"]

    fresh = world.client("fresh").fetch_release("1.0.1")
    assert fresh.via == "full" and fresh.path.read_bytes() == v2

    # Bytes that are no signed release: no base for a delta, the full release instead.
    stranger = world.tmp / "stranger.tar"
    stranger.write_bytes(archive("0.9-local"))
    other = world.client("modified").fetch_release("1.0.1", have=stranger)
    assert other.via == "full" and other.path.read_bytes() == v2


def test_deltas_come_from_the_last_releases_before_and_each_is_checked(world: World):
    for version in ("1.0", "1.1", "1.2", "1.10"):
        world.release(version, deltas=False)
    published = deltas.publish_deltas(world.repo, "1.10", last=2)
    assert [t.path for t in published] == ["deltas/1.1-1.10.bsdiff", "deltas/1.2-1.10.bsdiff"]
    fetched = world.client().fetch_release("1.10", have=world.installed("1.1"))
    assert fetched.via == "delta" and fetched.path.read_bytes() == archive("1.10")
    # Holding 1.0, from which no delta was made: the full release.
    assert world.client("old").fetch_release("1.10", have=world.installed("1.0")).via == "full"
    with pytest.raises(ReleaseError, match="no earlier release"):
        deltas.publish_deltas(world.repo, "1.0")


def test_the_trusted_state_persists_and_a_release_not_signed_is_unavailable(world: World):
    world.release("2.0")
    client = world.client()
    client.fetch_release("2.0")
    assert json.loads((client.metadata_dir / "timestamp.json").read_bytes())["signed"]["version"]
    with pytest.raises(UpdateUnavailable) as caught:
        world.client().fetch_release("2.1")  # the same state directory, a new process
    assert caught.value.reason == "not-published" and "kenshin release status" in str(caught.value)


def test_a_server_without_the_repository_or_no_server_is_unavailable(world: World):
    client = world.client()
    client.base_url = world.url.replace("/updates", "/nothing")
    with pytest.raises(UpdateUnavailable) as caught:
        client.fetch_release("1.0")
    assert caught.value.reason == "download"
    client.base_url = f"http://127.0.0.1:{free_tcp_port()}/updates"  # nobody listens
    with pytest.raises(UpdateUnavailable) as caught:
        client.fetch_release("1.0")
    assert caught.value.reason == "download" and "try again later" in str(caught.value)


def test_a_published_version_is_never_changed_and_every_role_expires_on_its_own(world: World):
    world.release("3.0")
    other = world.tmp / "other.tar"
    other.write_bytes(b"not the same")
    with pytest.raises(ReleaseError, match="published already"):
        world.repo.add_release(other, "3.0")
    with pytest.raises(ReleaseError, match="already holds a repository"):
        Repository.init(world.repo.path, world.keys)
    roles = world.repo.status()["roles"]
    expiries = {role: roles[role]["expires"] for role in roles}
    assert expiries["timestamp"] < expiries["snapshot"] < expiries["targets"] < expiries["root"]
    assert {roles[r]["holder"] for r in ("root", "targets")} == {"offline"}
    assert {roles[r]["holder"] for r in ("snapshot", "timestamp")} == {"online"}
