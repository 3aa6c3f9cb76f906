"""bench/update_bytes.py runs and prints its table (its figures are the bench's business)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a process of its own: the agent built twice, two servers

REPO = Path(__file__).resolve().parents[2]


def test_update_bytes_prints_the_delta_and_the_full_target_against_the_goal():
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "update_bytes.py"), "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for text in ("as a delta", "as the full target", "metadata (HTTP bodies)", "TLS", "goal"):
        assert text in done.stdout
    assert "patch release under 50.0 kB on the wire:" in done.stdout
