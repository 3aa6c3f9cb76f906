"""`kenshin server ...` as an operator runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from kenshin.cli.server import app
from kenshin.server import schema as s
from kenshin.server.db import current_revision, head_revision, make_engine
from kenshin.server.security import verify_password
from kenshin.server.workers import BACKGROUND_NAME

runner = CliRunner()


def _invoke(args: list[str], url: str, **kwargs):
    return runner.invoke(app, args, env={"KENSHIN_DATABASE_URL": url}, **kwargs)


def test_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "migrate", "create-admin"):
        assert command in result.output
    assert runner.invoke(app, ["run", "--help"]).exit_code == 0


def test_migrate(empty_database_url: str) -> None:
    result = _invoke(["migrate"], empty_database_url)
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.output
    assert current_revision(empty_database_url) == head_revision()
    assert _invoke(["migrate"], empty_database_url).exit_code == 0


def test_bad_settings_exit_2(tmp_path) -> None:
    result = runner.invoke(app, ["migrate"], env={"KENSHIN_DATABASE_URL": "mysql://x/y"})
    assert result.exit_code == 2
    assert "KENSHIN_DATABASE_URL" in result.output
    result = runner.invoke(app, ["migrate", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2


def _admin(url: str):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(s.users)).one()
    finally:
        engine.dispose()


def test_create_admin(empty_database_url: str) -> None:
    args = ["create-admin", "--email", "Root@Example.jp", "--password", "first password"]
    result = _invoke(args, empty_database_url)
    assert result.exit_code == 0, result.output
    assert "root@example.jp" in result.output and "created" in result.output
    user = _admin(empty_database_url)
    assert (user.email, user.role, user.tenant_id) == ("root@example.jp", "admin", None)
    assert verify_password("first password", user.password_hash)
    # Again, with the password typed at the prompt: the same admin, a new password.
    prompt = _invoke(
        ["create-admin", "--email", "root@example.jp"],
        empty_database_url,
        input="second password\nsecond password\n",
    )
    assert prompt.exit_code == 0, prompt.output
    assert "second password" not in prompt.output
    assert verify_password("second password", _admin(empty_database_url).password_hash)


def test_create_admin_refuses_bad_input(database_url: str) -> None:
    short = _invoke(["create-admin", "--email", "a@b.jp", "--password", "short"], database_url)
    assert short.exit_code == 2
    assert (
        _invoke(
            ["create-admin", "--email", "nobody", "--password", "long enough"], database_url
        ).exit_code
        == 2
    )
    assert _invoke(["create-admin"], database_url).exit_code == 2  # --email is required


def _child_named(pid: int, name: str) -> int:
    """The child process of `pid` named `name` (its comm)."""
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        if Path(f"/proc/{child}/comm").read_text().strip() == name:
            return int(child)
    raise AssertionError(f"no child process {name}")


@pytest.mark.parametrize("workers", [1, 2])
def test_run_on_a_free_port(database_url: str, tmp_path, workers: int) -> None:
    env = {
        **os.environ,
        "KENSHIN_DATABASE_URL": database_url,
        "KENSHIN_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        "KENSHIN_MQTT_PORT": "0",  # with --workers 2 the background process runs the broker
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KENSHIN_CONFIG", None)
    run = ["run", "--port", "0", "--workers", str(workers)]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from kenshin.cli.server import app; app()", *run],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "listening on" in line:
                break
        else:
            pytest.fail(f"no URL printed: {lines} {proc.stderr.read()}")
        assert any("secret key" in line and "secret.key" in line for line in lines)
        assert (tmp_path / "secret.key").exists()
        url = line.split("listening on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        response = httpx.get(f"{url}/readyz", timeout=10)
        assert response.json()["parts"]["database"] == {"ok": True}
        if workers > 1:  # every worker answers; one broker, in the background process
            lines += [proc.stdout.readline() for _ in range(3)]
            assert sum("MQTT broker (embedded)" in line for line in lines) == 1, lines
            assert any("2 API workers" in line for line in lines), lines
            with httpx.Client(base_url=url, timeout=10) as client:
                for _ in range(20):
                    assert client.get("/readyz").status_code == 200
            # The background process dead, the server stops (exit 1), not runs on without
            # its ingest and jobs.
            background = _child_named(proc.pid, BACKGROUND_NAME)
            os.kill(background, signal.SIGKILL)
            assert proc.wait(timeout=30) == 1
            return
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            raise
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0


def test_a_taken_mqtt_port_is_an_error_naming_its_holder(tmp_path) -> None:
    """Gateways were told the configured port: serving another one would strand them."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from kenshin.cli.server import app; app()",
                "run",
                "--port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "KENSHIN_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}",
                "KENSHIN_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
                "KENSHIN_MQTT_PORT": str(port),
            },
        )
    assert result.returncode == 1
    assert f"MQTT port {port} on 127.0.0.1 is taken by pid {os.getpid()} (" in result.stderr
    assert "Traceback" not in result.stderr
