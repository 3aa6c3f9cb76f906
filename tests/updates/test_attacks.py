"""Attacks on the update channel, each refused by the gateway's real ngclient.

The attacker is a compromised server or mirror: it can serve any bytes and, holding the
online keys, sign snapshots and timestamps (`server_signs`); it does not hold the offline
keys (root, targets) nor the recipes key. After each refusal the gateway's trusted state
is what it was, and the files it already verified are untouched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, TargetFile
from tuf.api.serialization.json import JSONSerializer

from kenshin.updates import deltas
from kenshin.updates.client import UpdateClient, UpdateRefused, UpdateUnavailable
from kenshin.updates.keys import KeyDirs, load_signer
from kenshin.updates.repository import ReleaseError, Repository

from .conftest import World, archive

COMPACT = JSONSerializer(compact=True)


def refused(client: UpdateClient, version: str, reason: str, **kwargs: Any) -> UpdateRefused:
    with pytest.raises(UpdateRefused) as caught:
        client.fetch_release(version, **kwargs)
    assert caught.value.reason == reason, caught.value
    assert "keep the installed version" in str(caught.value)
    return caught.value


def write(world: World, role: str, md: Metadata[Any], *, versioned: bool = True) -> None:
    data = md.to_bytes(COMPACT)
    if versioned:
        world.served(f"{md.signed.version}.{role}.json").write_bytes(data)
    world.served(f"{role}.json").write_bytes(data)


def online(world: World, role: str) -> CryptoSigner:
    keyids = Metadata.from_file(str(world.served("root.json"))).signed.roles[role].keyids
    return load_signer(world.keys, role, keyids)


def server_signs(
    world: World,
    *,
    snapshot: Callable[[Any], None] | None = None,
    timestamp: Callable[[Any], None] | None = None,
) -> None:
    """What a compromised server can do with the online keys: a new snapshot (changed by
    `snapshot`, if given) and a new timestamp naming it (then changed by `timestamp`)."""
    snap = Metadata.from_file(str(world.served("snapshot.json")))
    if snapshot is not None:
        snapshot(snap.signed)
        snap.signed.version += 1
        snap.sign(online(world, "snapshot"))
        write(world, "snapshot", snap)
    stamp = Metadata.from_file(str(world.served("timestamp.json")))
    stamp.signed.snapshot_meta = MetaFile(version=snap.signed.version)
    if timestamp is not None:
        timestamp(stamp.signed)
    stamp.signed.version += 1
    stamp.sign(online(world, "timestamp"))
    write(world, "timestamp", stamp, versioned=False)


def forged_targets(world: World, role: str, path: str, data: bytes, signer) -> None:
    """`role`'s metadata with one more target, signed by `signer`, served as its next
    version and named by the server's snapshot."""
    md = Metadata.from_file(str(world.served(f"{role}.json")))
    target = TargetFile.from_data(path, data)
    stored = world.repo.target_file(target)
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(data)
    md.signed.targets[path] = target
    md.signed.version += 1
    md.sign(signer)
    write(world, role, md)
    server_signs(
        world, snapshot=lambda s: s.meta.__setitem__(f"{role}.json", MetaFile(md.signed.version))
    )


def test_a_target_whose_bytes_do_not_match_is_refused(world: World):
    world.release("1.0")
    stored = world.repo.target_file(world.repo.targets()["releases/1.0.tar"])
    data = bytearray(stored.read_bytes())
    data[1000] ^= 0xFF  # the same length, one byte changed
    stored.write_bytes(bytes(data))
    client = world.client()
    refused(client, "1.0", "hash")
    assert not (client.downloads / "1.0.tar").exists()
    stored.write_bytes(archive("1.0") + b"tail")  # longer than signed
    refused(client, "1.0", "hash")


def test_metadata_signed_by_a_key_the_gateway_does_not_trust_is_refused(world: World):
    world.release("1.0")
    client = world.client()
    client.fetch_release("1.0")
    stranger = CryptoSigner.generate_ed25519()
    # The server (online keys, not the targets key) publishes a release of its own.
    forged_targets(world, "targets", "releases/6.6.6.tar", b"evil", stranger)
    refused(client, "6.6.6", "signature")
    # A timestamp signed by a stranger instead of the timestamp key.
    world.repo.refresh_timestamp()
    stamp = Metadata.from_file(str(world.served("timestamp.json")))
    stamp.signed.version += 1
    stamp.sign(stranger)
    write(world, "timestamp", stamp, versioned=False)
    refused(world.client("other"), "1.0", "signature")


def test_an_older_timestamp_snapshot_or_targets_replayed_is_refused(world: World):
    world.release("1.0")
    before = world.tmp / "metadata-at-1.0"
    shutil.copytree(world.repo.metadata_dir, before)
    world.release("1.1")
    old_snapshot = Metadata.from_file(str(before / "snapshot.json")).signed
    client = world.client()
    assert client.fetch_release("1.1").via == "full"

    # A mirror that serves the whole older state.
    now = world.tmp / "metadata-now"
    shutil.move(world.repo.metadata_dir, now)
    shutil.copytree(before, world.repo.metadata_dir)
    refused(client, "1.0", "rollback")
    shutil.rmtree(world.repo.metadata_dir)
    shutil.move(now, world.repo.metadata_dir)

    # A fresh timestamp naming the older snapshot.
    server_signs(
        world, timestamp=lambda t: setattr(t, "snapshot_meta", MetaFile(old_snapshot.version))
    )
    refused(client, "1.1", "rollback")

    # A fresh snapshot naming the older (validly signed, still served) targets.
    old_targets = old_snapshot.meta["targets.json"].version
    server_signs(
        world, snapshot=lambda s: s.meta.__setitem__("targets.json", MetaFile(old_targets))
    )
    refused(client, "1.1", "rollback")


def test_an_expired_timestamp_served_forever_is_refused_until_the_server_renews_it(world: World):
    world.release("1.0")
    client = world.client()
    client.fetch_release("1.0")
    # The mirror froze: it goes on serving a timestamp whose day has passed.
    world.repo.clock = lambda: datetime.now(UTC) - timedelta(days=2)
    world.repo.refresh_timestamp()
    err = refused(client, "1.0", "expired")
    assert "refresh-timestamp" in err.next_step
    world.repo.clock = lambda: datetime.now(UTC)
    world.repo.refresh_timestamp()  # what the server runs online
    assert client.fetch_release("1.0").via == "full"


def test_a_recipe_signed_outside_its_delegation_is_refused(world: World):
    world.release("1.0")
    recipe = world.tmp / "pv-inverter.tar"
    recipe.write_bytes(b"a recipe")
    world.repo.add_recipe(recipe)
    client = world.client()
    assert client.fetch_recipe("pv-inverter.tar").read_bytes() == b"a recipe"

    with pytest.raises(ReleaseError, match="recipes/<name> only"):
        world.repo.publish([("releases/9.9.tar", b"evil")], role="recipes")
    # The recipes key signs a release anyway: outside recipes/*, so no gateway asks it.
    recipes_key = load_signer(world.keys, "recipes", world.repo.keyids("recipes"))
    forged_targets(world, "recipes", "releases/9.9.tar", b"evil", recipes_key)
    with pytest.raises(UpdateUnavailable) as caught:
        client.fetch_release("9.9")
    assert caught.value.reason == "not-published"
    # Nor can it shadow a release the targets key signed.
    forged_targets(world, "recipes", "releases/1.0.tar", b"evil", recipes_key)
    assert client.fetch_release("1.0").path.read_bytes() == archive("1.0")

    # A recipe signed by a key the targets role never delegated to.
    forged_targets(world, "recipes", "recipes/evil.tar", b"evil", CryptoSigner.generate_ed25519())
    with pytest.raises(UpdateRefused) as refusal:
        world.client("another").fetch_recipe("evil.tar")
    assert refusal.value.reason == "signature"


def test_a_corrupted_delta_is_refused_and_the_full_release_taken_instead(world: World):
    world.release("1.0")
    world.release("1.1")
    have = world.installed("1.0")
    delta = world.repo.target_file(world.repo.targets()["deltas/1.0-1.1.bsdiff"])
    good = delta.read_bytes()
    delta.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    refused(world.client(), "1.1", "hash", have=have, fallback=False)
    fetched = world.client().fetch_release("1.1", have=have)
    assert fetched.via == "full" and "not what the repository signed" in fetched.delta_refused
    assert fetched.path.read_bytes() == archive("1.1")

    # A delta signed by the targets key that patches into other bytes than the release's
    # (made from the wrong base): refused after patching, before anything is accepted.
    wrong = deltas.make(archive("0.1"), archive("1.1"))
    world.repo.publish([("deltas/1.0-1.1.bsdiff", wrong)], replace=True)
    refused(world.client("b"), "1.1", "delta", have=have, fallback=False)
    assert world.client("c").fetch_release("1.1", have=have).via == "full"
    with pytest.raises(deltas.DeltaRefused):
        deltas.apply(archive("1.0"), b"BSDIFF40garbage", world.repo.targets()["releases/1.1.tar"])


def test_the_gateway_follows_rotated_keys_and_the_old_ones_sign_nothing(world: World):
    world.release("1.0")
    client = world.client()
    client.fetch_release("1.0")
    old_targets = load_signer(world.keys, "targets", world.repo.keyids("targets"))
    for role in ("root", "targets", "snapshot", "timestamp", "root", "recipes"):
        world.repo.rotate_key(role)
    world.release("1.1")
    assert client.fetch_release("1.1", have=world.installed("1.0")).via == "delta"
    assert world.client("new-gateway").fetch_release("1.1").via == "full"  # from root 1
    root = Metadata.from_file(str(world.served("root.json")))
    assert root.signed.version == 6 and old_targets.public_key.keyid not in root.signed.keys
    forged_targets(world, "targets", "releases/6.6.6.tar", b"evil", old_targets)
    refused(client, "6.6.6", "signature")


def test_a_lost_online_key_is_replaced_but_a_lost_root_key_cannot_be(world: World):
    world.release("1.0")
    client = world.client()
    client.fetch_release("1.0")
    (world.keys.online / "timestamp.pem").unlink()
    without_online = Repository(world.repo.path, KeyDirs(offline=world.keys.offline))
    with pytest.raises(ReleaseError, match="--online-keys"):
        without_online.rotate_key("targets")  # refused before any key file moves
    assert sorted(p.name for p in world.keys.offline.iterdir()) == ["root.pem", "targets.pem"]
    world.repo.rotate_key("timestamp")
    world.release("1.1")
    assert client.fetch_release("1.1").via == "full"
    (world.keys.offline / "root.pem").unlink()
    with pytest.raises(ReleaseError, match="no root key"):
        world.repo.rotate_key("root")
    assert Path(world.keys.offline / "targets.pem").exists()
