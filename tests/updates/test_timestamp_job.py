"""The server signs the update repository's timestamp online (the `update timestamp` job,
with the online keys only): without it a repository whose operator forgot `kenshin release
refresh-timestamp` would look frozen to every gateway within a day."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kenshin.server.jobs import server_jobs
from kenshin.server.security import CredentialBox
from kenshin.server.settings import Settings
from kenshin.updates.keys import KeyDirs
from kenshin.updates.repository import Repository


def test_the_server_renews_the_timestamp_with_the_online_keys_alone(tmp_path: Path):
    keys = KeyDirs(tmp_path / "offline", tmp_path / "online", tmp_path / "recipe-keys")
    repo = Repository.init(tmp_path / "repo", keys)
    before = repo.load("timestamp").signed
    box = CredentialBox(b"k" * 32)
    assert "update timestamp" not in [job.name for job in server_jobs(Settings(), box)]
    settings = Settings(updates_dir=repo.path, updates_online_keys=keys.online)
    (job,) = [job for job in server_jobs(settings, box) if job.name == "update timestamp"]
    job.run(None, datetime.now(UTC))  # type: ignore[arg-type]  (no database needed)
    after = repo.load("timestamp").signed
    assert after.version == before.version + 1 and after.expires >= before.expires
    # and what it signed verifies from the root, as a gateway would check it
    root = repo.load("root")
    root.verify_delegate("timestamp", repo.load("timestamp"))
