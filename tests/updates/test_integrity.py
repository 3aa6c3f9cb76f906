"""Integrity as an intrusion signal (`kenshin.updates.integrity`): an installed version's
files against its archive, the archive against the length and hash the repository signed,
that signature checked again from the gateway's trusted root. Any change, added or removed
file, a swapped archive or doctored metadata is drift; the untouched install is not."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
from pathlib import Path

import pytest

from kenshin.gateway.updater import AgentUpdates, UpdateSetup
from kenshin.server.app import create_app
from kenshin.server.settings import Settings
from kenshin.updates.archive import build_archive
from kenshin.updates.client import UpdateClient
from kenshin.updates.install import Installer
from kenshin.updates.integrity import INTEGRITY_EVENT, Drift, check_installed, trusted_release
from kenshin.updates.keys import KeyDirs
from kenshin.updates.repository import Repository
from kenshin.wire import Event
from tests.server.conftest import serving
from tests.support import eventually, run

V1 = "1.0.0"


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path]:
    """V1 published, fetched and verified by a gateway's client and installed, once for
    the module: the install root and the metadata directory its client keeps."""
    tmp = tmp_path_factory.mktemp("integrity")
    keys = KeyDirs(tmp / "offline", tmp / "online", tmp / "recipe-keys")
    repo = Repository.init(tmp / "repo", keys)
    files = {
        "kenshin/__init__.py": f'__version__ = "{V1}"\n'.encode(),
        **{f"kenshin/{name}.py": f"# {name}\nx = 1\n".encode()
           for name in ("echonet/frame", "wire/codec", "gateway/agent", "gateway/queue")},
    }  # fmt: skip
    (tmp / f"{V1}.tar").write_bytes(build_archive(files))
    repo.add_release(tmp / f"{V1}.tar", V1)
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'server.db'}",
        secret_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        devices=False, jobs=False, auto_migrate=False, updates_dir=repo.path,
    )  # fmt: skip
    shutil.copy(repo.metadata_dir / "1.root.json", tmp / "initial-root.json")
    with serving(create_app(settings)) as base:
        client = UpdateClient(f"{base}/updates", tmp / "gw", tmp / "initial-root.json")
        fetched = client.fetch_release(V1)
    installer = Installer(tmp / "root")
    installer.unpack(V1, fetched.path)
    installer.switch(V1)
    return installer.root, client.metadata_dir


@pytest.fixture
def gateway(published, tmp_path: Path) -> tuple[Installer, Path]:
    """The test's own copy of the install root and the metadata."""
    root, metadata = published
    shutil.copytree(root, tmp_path / "root", symlinks=True)
    shutil.copytree(metadata, tmp_path / "tuf")
    return Installer(tmp_path / "root"), tmp_path / "tuf"


def check(installer: Installer, metadata: Path) -> Drift:
    return check_installed(installer.root, V1, trusted_release(metadata, V1))


def test_an_untouched_install_is_whole(gateway):
    drift = check(*gateway)
    assert drift.ok and drift.detail()["counts"] == {"changed": 0, "added": 0, "removed": 0}


def test_changed_added_and_removed_files_are_each_drift(gateway):
    installer, metadata = gateway
    package = installer.directory(V1) / "kenshin"
    with (package / "gateway" / "queue.py").open("a") as module:
        module.write("import os; os.system('curl evil')\n")  # a file changed
    (package / "gateway" / "backdoor.py").write_text("x = 1\n")  # one added
    (package / "wire" / "codec.py").unlink()  # one removed
    (package / "echonet" / "__pycache__").mkdir()
    (package / "echonet" / "__pycache__" / "frame.cpython-311.pyc").write_bytes(b"\0")
    drift = check(installer, metadata)
    assert not drift.ok
    assert drift.changed == ("kenshin/gateway/queue.py",)
    assert drift.added == (
        "kenshin/echonet/__pycache__/frame.cpython-311.pyc",
        "kenshin/gateway/backdoor.py",
    )
    assert drift.removed == ("kenshin/wire/codec.py",)
    detail = json.loads(json.dumps(drift.detail()))  # what goes in the event, as JSON
    assert detail["ok"] is False and detail["counts"] == {"changed": 1, "added": 2, "removed": 1}


def test_a_symlink_slipped_in_is_drift(gateway):
    installer, metadata = gateway
    package = installer.directory(V1) / "kenshin"
    (package / "gateway" / "agent.py").unlink()
    (package / "gateway" / "agent.py").symlink_to("/tmp/elsewhere.py")
    assert check(installer, metadata).changed == ("kenshin/gateway/agent.py",)


def test_an_archive_swapped_with_the_files_is_not_trusted(gateway):
    """Whoever changed the files and the archive alike is caught by the signed hash."""
    installer, metadata = gateway
    archive = installer.archive(V1)
    assert archive is not None
    archive.write_bytes(archive.read_bytes().replace(b"x = 1", b"x = 2"))
    drift = check(installer, metadata)
    assert not drift.ok and "not the archive the repository signed" in drift.problem


def test_doctored_metadata_vouches_for_nothing(gateway):
    _, metadata = gateway
    targets = json.loads((metadata / "targets.json").read_text())
    for info in targets["signed"]["targets"].values():
        info["hashes"]["sha256"] = "0" * 64
    (metadata / "targets.json").write_text(json.dumps(targets))
    with pytest.raises(ValueError, match="does not verify"):
        trusted_release(metadata, V1)


def test_missing_metadata_or_an_unsigned_version_is_drift_too(gateway, tmp_path):
    installer, metadata = gateway
    with pytest.raises(ValueError, match="does not verify"):
        trusted_release(tmp_path / "nothing-here", V1)
    assert trusted_release(metadata, "9.9.9") is None
    assert "not in the signed metadata" in check_installed(installer.root, V1, None).problem
    shutil.rmtree(installer.archives)
    assert "cannot be read" in check(installer, metadata).problem


def test_the_agent_reports_at_start_and_drift_as_an_event_even_offline(gateway, tmp_path):
    """The server unreachable: the metadata verified last is checked again and used."""
    installer, metadata = gateway
    state = tmp_path / "state"
    state.mkdir()
    shutil.copytree(metadata, state / "tuf")
    setup = UpdateSetup(
        installer.root, state, state / "initial-root.json", "http://127.0.0.1:9/updates"
    )
    reported: list[Event] = []
    updates = AgentUpdates(setup, V1, reported.append)

    async def scenario():
        watching = asyncio.create_task(updates._watch_integrity())
        try:
            await eventually(lambda: len(reported) == 1, timeout_s=20)
        finally:
            watching.cancel()

    run(scenario())
    assert reported[0].code == INTEGRITY_EVENT and reported[0].detail["ok"] is True
    (installer.directory(V1) / "kenshin" / "gateway" / "extra.py").write_text("x = 1\n")
    drift = updates.check_integrity()
    assert drift is not None and drift.added == ("kenshin/gateway/extra.py",)
    # not run from an install root (a developer's agent): nothing to check
    assert AgentUpdates(setup, "7.7.7", reported.append).check_integrity() is None
