"""`kenshin release ...`: the operator's commands, their exit codes and what they print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kenshin.cli import app

from .conftest import archive
from .test_recipes_manifest import SHIPPED

COMMANDS = [
    "init", "add", "delta", "sign", "rotate-key", "refresh-timestamp", "add-recipe", "status",
]  # fmt: skip


def release(tmp_path: Path, *args: str, keys: tuple[str, ...] = ("offline", "online")):
    """`kenshin release ARGS --repo <tmp>/repo`, with the key directories `keys` (offline,
    online, recipe) under tmp_path."""
    flags = [item for key in keys for item in (f"--{key}-keys", str(tmp_path / key))]
    return CliRunner().invoke(app, ["release", *args, "--repo", str(tmp_path / "repo"), *flags])


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_every_release_command_has_help(command: list[str]):
    result = CliRunner().invoke(app, ["release", *command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_an_operator_releases_rotates_and_reads_the_status(tmp_path: Path):
    every = ("offline", "online", "recipe")
    assert release(tmp_path, "init", keys=every).exit_code == 0
    assert (tmp_path / "offline" / "root.pem").exists() and (
        tmp_path / "online" / "timestamp.pem"
    ).exists()
    for version in ("1.0", "1.1"):
        (tmp_path / f"{version}.tar").write_bytes(archive(version))
        result = release(tmp_path, "add", str(tmp_path / f"{version}.tar"), "--version", version)
        assert result.exit_code == 0, result.output
    result = release(tmp_path, "delta", "1.1")
    assert result.exit_code == 0 and "deltas/1.0-1.1.bsdiff" in result.output
    (tmp_path / "recipe.tar").write_bytes(b"recipe")  # not a package: refused unsigned
    result = release(tmp_path, "add-recipe", str(tmp_path / "recipe.tar"), keys=("recipe",))
    assert result.exit_code == 2 and "not a tar" in result.output
    result = release(tmp_path, "add-recipe", str(SHIPPED), keys=("recipe", "online"))
    assert result.exit_code == 0, result.output
    assert "published recipes/pv-inverter:" in result.output
    result = release(tmp_path, "add-recipe", str(SHIPPED), "--name", "pv", keys=("recipe",))
    assert result.exit_code == 2 and "published as 'pv'" in result.output
    assert release(tmp_path, "rotate-key", "timestamp").exit_code == 0
    assert release(tmp_path, "sign", "--role", "targets").exit_code == 0
    result = release(tmp_path, "refresh-timestamp", keys=("online",))
    assert result.exit_code == 0 and "timestamp" in result.output
    status = json.loads(release(tmp_path, "status", "--json").stdout)
    assert status["releases"] == ["1.0", "1.1"] and status["deltas"] == ["1.0-1.1"]
    assert status["recipes"] == ["pv-inverter"]
    assert status["roles"]["root"]["version"] == 2 and status["roles"]["root"]["key_here"]
    text = release(tmp_path, "status").output
    assert "timestamp" in text and "offline" in text


def test_errors_say_what_to_do_with_exit_codes_1_and_2(tmp_path: Path):
    result = release(tmp_path, "status")
    assert result.exit_code == 1 and "kenshin release init" in result.output
    result = release(tmp_path, "init", keys=("offline",))
    assert result.exit_code == 2 and "--online-keys" in result.output
    assert release(tmp_path, "init", keys=("offline", "online", "recipe")).exit_code == 0
    (tmp_path / "a.tar").write_bytes(b"a")
    result = release(tmp_path, "add", str(tmp_path / "a.tar"), "--version", "1.0", keys=("online",))
    assert result.exit_code == 1 and "--offline-keys" in result.output  # the targets key
    result = release(tmp_path, "add", str(tmp_path / "a.tar"), "--version", "../1")
    assert result.exit_code == 2 and "not a release version" in result.output
    result = release(tmp_path, "add", str(tmp_path / "missing.tar"), "--version", "1.0")
    assert result.exit_code == 2 and "no such file" in result.output
    result = release(tmp_path, "rotate-key", "nobody")
    assert result.exit_code == 2 and "one of root" in result.output
    result = release(tmp_path, "delta", "1.0")
    assert result.exit_code == 1 and "kenshin release add" in result.output
