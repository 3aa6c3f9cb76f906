"""A repository of the test's own, served by the real server app over real HTTP on
127.0.0.1, and a gateway's update client trusting its first root.

The release archives are small agent-like tars (`archives`): a few modules, one of them
changed from version to version, so deltas are real bsdiff deltas between real tars.
"""

from __future__ import annotations

import base64
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kenshin.server.app import create_app
from kenshin.server.settings import Settings
from kenshin.updates.archive import build_archive
from kenshin.updates.client import UpdateClient
from kenshin.updates.keys import KeyDirs
from kenshin.updates.repository import Repository
from tests.server.conftest import serving

MODULE = "kenshin/gateway/poller.py"


def archive(version: str) -> bytes:
    """A release of a few kilobytes in which one module says its version."""
    files = {
        f"kenshin/{name}.py": (f'"""{name}"""\n' + "x = 1\n" * 200).encode()
        for name in ("echonet/frame", "wire/codec", "gateway/agent", "gateway/queue")
    }
    files[MODULE] = (f'VERSION = "{version}"\n' + "def poll():\n    return 42\n" * 50).encode()
    return build_archive(files)


@dataclass
class World:
    tmp: Path
    keys: KeyDirs
    repo: Repository
    url: str  # the server's /updates

    def release(self, version: str, *, deltas: bool = True) -> bytes:
        """Publish `version` (and deltas to it from the releases before), its bytes."""
        from kenshin.updates.deltas import publish_deltas

        data = archive(version)
        path = self.tmp / f"{version}.tar"
        path.write_bytes(data)
        self.repo.add_release(path, version)
        if deltas and len(self.repo.releases()) > 1:
            publish_deltas(self.repo, version)
        return data

    def installed(self, version: str) -> Path:
        """The archive of `version` as a gateway holds it."""
        path = self.tmp / "installed" / f"{version}.tar"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(archive(version))
        return path

    def client(self, name: str = "gw") -> UpdateClient:
        """A gateway's client: its state directory persists across calls with `name`."""
        state = self.tmp / name
        root = self.tmp / f"{name}-initial-root.json"
        if not root.exists():  # installed with the repository's first root
            shutil.copy(self.repo.metadata_dir / "1.root.json", root)
        return UpdateClient(self.url, state, root)

    def served(self, name: str) -> Path:
        return self.repo.metadata_dir / name


@pytest.fixture
def keys(tmp_path: Path) -> KeyDirs:
    return KeyDirs(tmp_path / "offline", tmp_path / "online", tmp_path / "recipe-keys")


@pytest.fixture
def world(tmp_path: Path, keys: KeyDirs) -> Iterator[World]:
    repo = Repository.init(tmp_path / "repo", keys)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}",
        secret_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        devices=False,
        jobs=False,
        auto_migrate=False,  # the update repository needs no database
        updates_dir=repo.path,
    )
    with serving(create_app(settings)) as base:
        yield World(tmp_path, keys, repo, f"{base}/updates")
