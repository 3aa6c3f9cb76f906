"""The install root (`kenshin.updates.install`): versions side by side, `current` switched
by a rename, nothing half-done ever current, only current and previous kept."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from kenshin.gateway.supervisor import Supervisor, SupervisorOptions
from kenshin.gateway.updater import REQUEST, SUPERVISOR, read_json, write_json
from kenshin.updates import install
from kenshin.updates.archive import build_archive
from kenshin.updates.install import Installer, InstallError
from kenshin.updates.states import parse_update_args, update_args


def release(tmp: Path, version: str) -> Path:
    path = tmp / f"{version}.tar"
    path.write_bytes(
        build_archive(
            {
                "kenshin/__init__.py": f'__version__ = "{version}"\n'.encode(),
                "kenshin/gateway/agent.py": b"x = 1\n" * 100,
            }
        )
    )
    return path


def installed(tmp: Path, *versions: str) -> Installer:
    """An install root with each of `versions` installed and switched to, in order."""
    installer = Installer(tmp / "root")
    for version in versions:
        installer.unpack(version, release(tmp, version))
        installer.switch(version)
    return installer


def layout(installer: Installer) -> tuple:
    return (
        installer.current_version(),
        installer.previous_version(),
        sorted(os.listdir(installer.versions)),
        sorted(os.listdir(installer.archives)),
    )


def test_several_updates_keep_only_current_previous_and_their_archives(tmp_path: Path):
    installer = installed(tmp_path, "1.0", "1.1", "1.2", "1.3")
    assert layout(installer) == ("1.3", "1.2", ["1.2", "1.3"], ["1.2.tar", "1.3.tar"])
    assert (installer.current / "kenshin" / "__init__.py").read_text() == '__version__ = "1.3"\n'
    assert os.readlink(installer.current) == "versions/1.3"  # relative: the root may move
    assert installer.archive("1.3").read_bytes() == release(tmp_path, "1.3").read_bytes()


def test_a_rollback_keeps_the_previous_version_and_its_archive(tmp_path: Path):
    installer = installed(tmp_path, "1.0", "1.1", "1.2")
    installer.rollback("1.1")
    assert layout(installer) == ("1.1", None, ["1.1"], ["1.1.tar"])
    assert installer.archive("1.1").read_bytes() == release(tmp_path, "1.1").read_bytes()
    # the next update takes its delta from it, and goes on as usual
    installer.unpack("1.3", release(tmp_path, "1.3"))
    installer.switch("1.3")
    assert layout(installer)[:2] == ("1.3", "1.1")


def test_the_switch_is_one_rename_and_a_crash_inside_it_is_finished_by_the_next(
    tmp_path: Path, monkeypatch
):
    installer = installed(tmp_path, "1.0")
    installer.unpack("1.1", release(tmp_path, "1.1"))
    real_replace, seen = os.replace, []

    def crash_on_current(src, dst):
        seen.append(os.readlink(installer.current))  # `current` is never missing
        if Path(dst) == installer.current:
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_current)
    with pytest.raises(OSError):
        installer.switch("1.1")
    monkeypatch.setattr(os, "replace", real_replace)
    assert seen and set(seen) == {"versions/1.0"}
    assert (installer.current_version(), installer.previous_version()) == ("1.0", "1.0")
    installer.switch("1.1")  # again, as the supervisor does at its next start
    assert layout(installer) == ("1.1", "1.0", ["1.0", "1.1"], ["1.0.tar", "1.1.tar"])


def test_a_half_unpacked_version_never_becomes_current(tmp_path: Path, monkeypatch):
    installer = installed(tmp_path, "1.0")
    # a crash in the middle of unpacking leaves a partial directory, never versions/1.1
    partial = installer.versions / ".partial-1.1-abc"
    (partial / "kenshin").mkdir(parents=True)
    assert not installer.has("1.1")
    with pytest.raises(InstallError, match="not installed"):
        installer.switch("1.1")
    # an archive that breaks off midway is refused, and leaves nothing behind
    whole = release(tmp_path, "1.1").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[:1700])  # inside the second file's bytes
    with pytest.raises(InstallError):
        installer.unpack("1.1", cut)
    assert not installer.has("1.1") and installer.archive("1.1") is None
    # a failure after every file is out (the disk full at the fsync) leaves nothing either
    monkeypatch.setattr(install, "_fsync_tree", lambda path: (_ for _ in ()).throw(OSError()))
    with pytest.raises(InstallError):
        installer.unpack("1.1", release(tmp_path, "1.1"))
    assert not installer.has("1.1") and installer.archive("1.1") is None
    installer.prune()
    assert layout(installer) == ("1.0", None, ["1.0"], ["1.0.tar"])


@pytest.mark.parametrize(
    "member",
    [
        ("../evil.py", tarfile.REGTYPE),
        ("kenshin/../../evil.py", tarfile.REGTYPE),
        ("kenshin/link", tarfile.SYMTYPE),
        ("other/x.py", tarfile.REGTYPE),
    ],
)
def test_an_archive_with_anything_but_the_package_is_refused(tmp_path: Path, member):
    name, kind = member
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        init = tarfile.TarInfo("kenshin/__init__.py")
        tar.addfile(init, io.BytesIO(b""))
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, "/etc/passwd"
        tar.addfile(info, io.BytesIO(b""))
    path = tmp_path / "bad.tar"
    path.write_bytes(data.getvalue())
    installer = Installer(tmp_path / "root")
    with pytest.raises(InstallError):
        installer.unpack("1.0", path)
    assert installer.installed() == [] and not (tmp_path / "evil.py").exists()


def supervisor(installer: Installer, tmp: Path) -> Supervisor:
    (tmp / "state").mkdir(exist_ok=True)
    return Supervisor(SupervisorOptions(installer.root, tmp / "state"))


def test_a_supervisor_killed_mid_switch_finishes_it_at_its_next_start(tmp_path: Path):
    installer = installed(tmp_path, "1.0")
    installer.unpack("1.1", release(tmp_path, "1.1"))
    # Saved, then killed before the link moved.
    trial = {"version": "1.1", "from_version": "1.0", "started_s": 1e9, "crashes": 1}
    write_json(installer.root / SUPERVISOR, {"current": "1.1", "trial": trial})
    write_json(installer.root / REQUEST, {"version": "1.1", "from_version": "1.0"})
    started = supervisor(installer, tmp_path)
    started.recover()
    assert (installer.current_version(), installer.previous_version()) == ("1.1", "1.0")
    assert started.watchdog.trial.crashes == 1  # the trial goes on, with its deadline
    assert read_json(installer.root / SUPERVISOR)["trial"]["started_s"] == 1e9


def test_a_supervisor_killed_mid_rollback_finishes_it_at_its_next_start(tmp_path: Path):
    installer = installed(tmp_path, "1.0", "1.1")
    write_json(installer.root / SUPERVISOR, {"current": "1.0", "trial": None})
    supervisor(installer, tmp_path).recover()
    assert layout(installer) == ("1.0", None, ["1.0"], ["1.0.tar"])


def test_a_version_unpacked_for_a_switch_survives_a_supervisor_restart(tmp_path: Path):
    installer = installed(tmp_path, "1.0")
    installer.unpack("1.1", release(tmp_path, "1.1"))
    (installer.versions / ".partial-1.2-x").mkdir()
    write_json(installer.root / REQUEST, {"version": "1.1", "from_version": "1.0"})
    supervisor(installer, tmp_path).recover()
    assert installer.installed() == ["1.0", "1.1"]
    assert sorted(os.listdir(installer.versions)) == ["1.0", "1.1"]


def test_nothing_installed_is_an_error_that_says_what_to_do(tmp_path: Path):
    with pytest.raises(InstallError, match="kenshin gateway install"):
        supervisor(Installer(tmp_path / "root"), tmp_path).recover()


def test_the_update_commands_args(tmp_path: Path):
    assert parse_update_args(update_args("1.4.2", 30)) == ("1.4.2", 30)
    assert parse_update_args({"version": "1.4.2"}) == ("1.4.2", 0)
    for bad in (
        {},
        {"version": 3},
        {"version": "../1"},
        {"version": "1.0", "delay_s": -1},
        {"version": "1.0", "delay_s": 86_401},
        {"version": "1.0", "delay_s": True},
        {"version": "1.0", "delay_s": 1.5},
        ["1.0"],
    ):
        with pytest.raises(ValueError):
            parse_update_args(bad)
