"""The `kenshin` command as a user runs it: real processes, real UDP on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from kenshin.server import schema as s
from tests.support import free_udp_port

KENSHIN = [sys.executable, "-m", "kenshin"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}


def kenshin(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KENSHIN, *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


@contextmanager
def background(*args: str) -> Iterator[Any]:
    """A `kenshin` process that prints one JSON line when ready and stops on SIGTERM."""
    proc = subprocess.Popen(
        [*KENSHIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        yield json.loads(line)
    finally:
        proc.send_signal(signal.SIGTERM)  # SIGINT may be ignored in a background job
        assert proc.wait(timeout=30) == 0


def simulated_meters(*args: str):
    return background("sim", "meter", "--port", "0", "--json", *args)


@pytest.mark.parametrize(
    "args",
    [[], ["meter"], ["meter", "read"], ["sim", "meter"], ["echonet", "discover"], ["demo"]],
)
def test_every_command_has_help(args):
    result = kenshin(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_meter_read_json_gives_typed_values_with_units():
    with simulated_meters("--count", "2", "--host", "127.0.2.1", "--seed", "5", "--pv") as rows:
        assert [r["host"] for r in rows] == ["127.0.2.1", "127.0.2.2"]
        host, port = rows[1]["host"], str(rows[1]["port"])
        result = kenshin("meter", "read", "--host", host, "--port", port, "--json")
        assert result.returncode == 0, result.stderr
        reading = json.loads(result.stdout)
        assert reading["instantaneous_power"]["unit"] == "W"
        assert isinstance(reading["instantaneous_power"]["value"], int)
        assert reading["production_number"]["value"] == rows[1]["serial"]
        assert reading["cumulative_energy_reverse_wh"]["unit"] == "Wh"
        text = kenshin("meter", "read", "--host", host, "--port", port)
        assert text.returncode == 0 and "0xE7" in text.stdout and " W" in text.stdout


def test_sim_meter_starts_without_tracebacks():
    # Issue 17 item 7.3: the README's `kenshin sim meter --count 3` printed AssertionError
    # tracebacks at every start (meters known to the multicast listener before they were
    # open heard each other's start-up announcements).
    proc = subprocess.Popen(
        [*KENSHIN, "sim", "meter", "--count", "3", "--port", "0", "--host", "127.0.4.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert "3 meter(s)" in proc.stdout.readline() + proc.stdout.readline() + "".join(
            proc.stdout.readline() for _ in range(2)
        )
        time.sleep(1.0)  # the start-up announcements have gone round
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err and "Error" not in err, err


def test_discover_lists_every_simulated_meter():
    with simulated_meters("--count", "3", "--host", "127.0.3.1") as rows:
        result = kenshin("echonet", "discover", "--port", str(rows[0]["port"]), "--json")
        assert result.returncode == 0, result.stderr
        found = {node["host"] for node in json.loads(result.stdout)}
        assert found == {"127.0.3.1", "127.0.3.2", "127.0.3.3"}


def test_an_absent_meter_is_a_clear_error_and_exit_code_2():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # hears, never answers
        silent.bind(("127.0.9.9", 0))
        port = str(silent.getsockname()[1])
        result = kenshin("meter", "read", "--host", "127.0.9.9", "--port", port, "--timeout", "0.2")
    assert result.returncode == 2
    assert "no answer from 127.0.9.9" in result.stderr and "EPC" in result.stderr


def test_a_port_that_refuses_is_a_clear_error_at_once():
    # Issue 17 item 7.6: the ICMP port unreachable went unnoticed; the read waited ~17 s.
    port = free_udp_port("127.0.9.8")
    started = time.monotonic()
    result = kenshin("meter", "read", "--host", "127.0.9.8", "--port", str(port))
    assert result.returncode == 2
    assert time.monotonic() - started < 5
    assert f"no answer from 127.0.9.8:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_meter_read_prints_exact_wh_and_unit_words():
    # Issue 17 item 7.6: "4504700.0 Wh" and "kwh_0_1" on the terminal.
    with simulated_meters("--host", "127.0.5.1", "--seed", "5") as rows:
        host, port = rows[0]["host"], str(rows[0]["port"])
        text = kenshin("meter", "read", "--host", host, "--port", port)
        assert text.returncode == 0, text.stderr
        assert "kwh_" not in text.stdout and ".0 Wh" not in text.stdout
        assert "0.1 kWh" in text.stdout
        wh = re.search(r"cumulative_energy_normal_wh +([0-9,]+) Wh", text.stdout)
        assert wh and "," in wh.group(1), text.stdout
        as_json = kenshin("meter", "read", "--host", host, "--port", port, "--json")
        value = json.loads(as_json.stdout)["cumulative_energy_normal_wh"]["value"]
        assert isinstance(value, int) and f"{value:,}" == wh.group(1)


def test_version():
    from kenshin import __version__

    result = kenshin("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"kenshin {__version__}"


@pytest.mark.parametrize(
    ("route_b_id", "password", "told"),
    [
        ("0011223344556677", "0123456789AB", "ID must be 32 characters; 16"),
        ("X" * 33, "0123456789AB", "ID must be 32 characters; 33"),
        ("X" * 32, "0123456789A", "password must be 12 characters; 11"),
        ("X" * 31 + " ", "0123456789AB", "printable ASCII without spaces"),
    ],
)
def test_broute_credentials_are_checked_before_any_radio_work(route_b_id, password, told):
    # Issue 17 item 7.6: a B-route ID of the wrong length printed a traceback.
    for command in ("read", "scan"):
        result = kenshin("broute", command, "--device", "/dev/nonexistent-dongle",
                         "--id", route_b_id, "--password", password)  # fmt: skip
        assert result.returncode == 2
        assert told in result.stderr and "Traceback" not in result.stderr
        assert "nonexistent-dongle" not in result.stderr  # no device was opened
        assert password not in result.stderr


def test_a_taken_port_is_explained():
    with simulated_meters("--host", "127.0.4.1") as rows:
        again = kenshin("sim", "meter", "--host", "127.0.4.1", "--port", str(rows[0]["port"]))
        assert again.returncode == 2
        assert "--port 0" in again.stderr


def _whole(line: str) -> bool:
    """A report line of the platform at work: six gateways working (four homes of a
    retailer, two plants of a generator), live power, and a month backfilled."""
    if not line.startswith("gateways:") or "working 6" not in line:
        return False
    instant = int(line.split("readings: ")[1].split(" instant")[0])
    half_hour = int(line.split(" instant, ")[1].split(" half-hour")[0])
    return instant > 0 and half_hour >= 6 * 30 * 48


@pytest.mark.slow  # the whole platform, a month's backfill
def test_demo_runs_the_whole_platform(tmp_path):
    # Waits for the platform to be whole, however long the backfill takes on this machine
    # (a fixed minute was too short on a loaded one), then stops it as a user would.
    demo = Demo(tmp_path / "demo", "--report-every", "5")
    demo.until("/api/v1/docs")
    # The month's faults (kenshin.demofaults), so the Alerts page has real entries: a power
    # cut's six hours are missing from its meter's history, a surge's slots are there.
    demo.until("faults of the month: 2 alerts", timeout_s=400)
    demo.until(_whole, timeout_s=120)
    out, _ = demo.interrupt()
    assert "log in:" in out and "never connect uncertified devices" in out
    engine = create_engine(f"sqlite:///{tmp_path / 'demo' / 'kenshin.db'}")
    with engine.connect() as conn:
        alerts = conn.execute(select(s.alerts.c.rule, s.alerts.c.state)).all()
        codes = conn.execute(select(s.events.c.code)).scalars().all()
    engine.dispose()
    assert sorted(alerts) == [("impossible_value", "resolved"), ("no_data", "resolved")]
    assert {"alert_opened", "alert_resolved", "gateway_lost_contact"} <= set(codes)


class Demo:
    """`kenshin demo` as a user starts it in a terminal (SIGINT not ignored, as it would be
    in a background job or inherited from a test runner), its output read as it comes."""

    def __init__(self, workdir, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*KENSHIN, "demo", "--dir", str(workdir), "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        self.lines: list[str] = []

    def until(self, text: str | Callable[[str], bool], timeout_s: float = 120) -> str:
        """Read stdout up to the line holding `text`, or for which it is true (the demo
        prints as it goes, and reports every few seconds)."""
        found = text if callable(text) else lambda line: text in line
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            assert line, f"ended before {text!r}: {''.join(self.lines)}{self.proc.stderr.read()}"
            self.lines.append(line)
            if found(line):
                return line
        raise AssertionError(f"no {text!r} within {timeout_s:.0f} s: {''.join(self.lines)}")

    def interrupt(self) -> tuple[str, str]:
        """Ctrl-C: it must stop by itself, exit 0, say so in one line and nothing else."""
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        assert out.strip().splitlines()[-1] == "Kenshin demo stopped (Ctrl-C).", out
        assert "Traceback" not in out, out
        # The embedded broker may log a client's late ack while it runs (amqtt); nothing
        # may come of the stop itself.
        assert "KeyboardInterrupt" not in err and "CancelledError" not in err, err
        return "".join(self.lines) + out, err


@pytest.mark.slow  # three starts of the whole platform
def test_demo_starts_again_in_its_folder_and_stops_at_ctrl_c_any_time(tmp_path):
    # Issue 17 item 3: a second run in the same folder crashed (a new password against the
    # database's), and Ctrl-C in the first seconds was ignored, a second one tracebacks.
    first = Demo(tmp_path)
    first.until("starting fresh")
    login = first.until("log in:")
    first.until("Press Ctrl-C to stop.")  # set up: tenants, homes, the folder's state
    first.interrupt()

    again = Demo(tmp_path)
    again.until("starting again with the data in")
    panel = again.until("control panel:").split()[2]
    assert again.until("log in:") == login  # the same logins, password and all
    again.until("Press Ctrl-C to stop.")
    password = login.split(" / ")[1].split()[0]
    with httpx.Client(base_url=panel, timeout=30) as client:  # the first run's data
        answer = client.post(
            "/api/v1/auth/login",
            json={"email": "operator@demo.kenshin.local", "password": password},
        )
        assert answer.status_code == 200, answer.text
        sites = client.get("/api/v1/sites").json()["items"]
        assert len(sites) == 4  # the retailer's homes, not twice
    again.interrupt()

    early = Demo(tmp_path)  # Ctrl-C while it sets up: it stops all the same
    early.until("starting again with the data in")
    early.interrupt()

    fresh = Demo(tmp_path, "--fresh")
    fresh.until("starting fresh")
    fresh.interrupt()


def emulated_dongle(tmp_path, model: str, *extra: str):
    return background(
        "sim", "dongle", "--model", model, "--json", "--link", str(tmp_path / "tty"), *extra
    )


@pytest.mark.parametrize(
    ("model", "extra"), [("bp35a1", ()), ("bp35c2", ()), ("bp35c2", ("--no-sa2",))]
)
def test_broute_scan_and_read_through_an_emulated_dongle(tmp_path, model, extra):
    with emulated_dongle(tmp_path, model, *extra) as where:
        creds = ["--device", where["device"], "--id", where["id"], "--password", where["password"]]
        scan = kenshin("broute", "scan", *creds, "--json")
        assert scan.returncode == 0, scan.stderr
        pans = json.loads(scan.stdout)
        assert len(pans) == 1 and pans[0]["dialect"] == model.upper()
        read = kenshin("broute", "read", *creds, "--json")
        assert read.returncode == 0, read.stderr
        reading = json.loads(read.stdout)
        assert isinstance(reading["instantaneous_power"]["value"], int)
        assert reading["link"]["value"]["state"] == "joined"
        assert where["password"] not in read.stderr


def test_broute_read_with_a_wrong_password_says_so(tmp_path):
    with emulated_dongle(tmp_path, "bp35a1") as where:
        result = kenshin(
            "broute", "read", "--device", where["device"], "--id", where["id"],
            "--password", "NOTTHEPASSWD",
        )  # fmt: skip
        assert result.returncode == 2
        assert "check the B-route ID and password" in result.stderr
        assert "next try" not in result.stderr  # a one-shot command promises no retry


def test_broute_on_a_missing_device_says_what_to_do():
    result = kenshin("broute", "scan", "--device", "/dev/nonexistent-dongle", "--id", "X" * 32,
                     "--password", "P" * 12)  # fmt: skip
    assert result.returncode == 2
    assert "cannot open /dev/nonexistent-dongle" in result.stderr and "plugged in" in result.stderr
