"""The gateway's identity file carries the update repository's first root: trust in
updates starts at the factory (`kenshin gateway make-identity --update-root`), and the
agent puts it where its update client looks, never over a root it already has."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kenshin.cli import app
from kenshin.gateway.identity import Identity
from kenshin.updates.keys import KeyDirs
from kenshin.updates.repository import Repository


def make_identity(tmp_path: Path, out: str, *more: str):
    return CliRunner().invoke(app, [
        "gateway", "make-identity", "--serial", "GW-ROOT", "--server-url", "https://x.test",
        "--out", str(tmp_path / out), *more])  # fmt: skip


def test_the_factory_puts_the_first_root_in_the_identity_and_the_agent_installs_it(
    tmp_path: Path,
):
    keys = KeyDirs(tmp_path / "offline", tmp_path / "online", tmp_path / "recipe-keys")
    repo = Repository.init(tmp_path / "repo", keys)
    first_root = repo.metadata_dir / "1.root.json"
    result = make_identity(tmp_path, "identity.json", "--update-root", str(first_root))
    assert result.exit_code == 0, result.output

    identity = Identity.load(tmp_path / "identity.json")
    assert identity.update_root == json.loads(first_root.read_bytes())
    initial = tmp_path / "state" / "initial-root.json"
    assert identity.write_update_root(initial)
    assert json.loads(initial.read_bytes()) == json.loads(first_root.read_bytes())
    initial.write_text('{"a root": "the gateway has rotated to since"}')
    assert not identity.write_update_root(initial)  # never over one it has
    assert "rotated" in initial.read_text()


def test_anything_but_a_signed_root_is_refused(tmp_path: Path):
    keys = KeyDirs(tmp_path / "offline", tmp_path / "online", tmp_path / "recipe-keys")
    repo = Repository.init(tmp_path / "repo", keys)
    not_root = repo.metadata_dir / "targets.json"
    result = make_identity(tmp_path, "a.json", "--update-root", str(not_root))
    assert result.exit_code == 2 and "not a signed TUF root" in result.output
    doctored = json.loads((repo.metadata_dir / "1.root.json").read_text())
    doctored["signed"]["expires"] = "2099-01-01T00:00:00Z"  # its signature no longer holds
    (tmp_path / "doctored.json").write_text(json.dumps(doctored))
    result = make_identity(tmp_path, "b.json", "--update-root", str(tmp_path / "doctored.json"))
    assert result.exit_code == 2 and "not a signed TUF root" in result.output
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()
