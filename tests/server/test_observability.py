"""Observability: /metrics (Prometheus, for the bearer metrics_token) moving while a gateway
sends readings; the same counters across `--workers` processes; request ids on the answer
and on every log line of a request, as text or JSON."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time

import aiomqtt
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kenshin.server import logs
from kenshin.server.settings import Settings
from kenshin.wire import InstantSample, ReadingsBatch, encode_publish
from tests.support import run

from .conftest import udp_meter
from .test_bulk_ingest import LOGIN, T0, _give_gw_a_its_mqtt_login

TOKEN = "metrics-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The whole server in this process: embedded broker on a free port, ingest, jobs."""
    return Settings(
        database_url=database_url,
        secret_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        broker="embedded",
        mqtt_port=0,
        metrics_token=TOKEN,
        forecast_every_s=3600,
        repair_every_s=0,
    )


def _series(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(series: dict, metric: str, **labels: str) -> float:
    return series.get((metric, frozenset(labels.items())), 0.0)


def _batch(meter_id: int, k: int) -> ReadingsBatch:
    samples = tuple(InstantSample(T0 + 1800 * k + 60 * i, 200 + i, 5, 5) for i in range(30))
    return ReadingsBatch(k + 1, f"m{meter_id}", samples)


def test_metrics_move_while_a_gateway_sends_readings(client, engine, world, fleet):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    meter = udp_meter(engine, world, fleet)
    _give_gw_a_its_mqtt_login(engine, fleet)
    service = client.app.state.device_service
    port = service.endpoint.port

    def scrape() -> dict:
        answer = client.get("/metrics", headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        return _series(answer.text)

    async def wait_subscribed() -> None:
        deadline = time.monotonic() + 20
        while not service.subscribed.is_set():
            assert time.monotonic() < deadline, "the ingest did not subscribe"
            await asyncio.sleep(0.05)

    run(wait_subscribed(), timeout_s=30)
    before = scrape()

    async def send(messages: list[tuple[str, bytes]]) -> None:
        async with aiomqtt.Client("127.0.0.1", port, **LOGIN) as gateway:
            for topic, payload in messages:
                await gateway.publish(topic, payload, qos=1)

    batches = [encode_publish(_batch(meter.id, k), "GW-A") for k in range(5)]
    run(send([*batches, ("k/GW-A/d", b"\xff")]))  # five batches and one that is not CBOR

    deadline = time.monotonic() + 20
    while True:
        after = scrape()
        moved = _value(after, "kenshin_ingest_messages_total", kind="readings") - _value(
            before, "kenshin_ingest_messages_total", kind="readings"
        )
        quarantined = _value(after, "kenshin_ingest_messages_total", kind="quarantined")
        if moved >= 5 and quarantined >= 1:
            break
        assert time.monotonic() < deadline, f"the counters did not move: {moved}"
        time.sleep(0.1)
    assert moved == 5
    assert (
        _value(after, "kenshin_ingest_readings_total", type="instant")
        - _value(before, "kenshin_ingest_readings_total", type="instant")
        == 5 * 30
    )
    assert _value(after, "kenshin_quarantine_messages") >= 1
    assert _value(after, "kenshin_gateways", state="working") == 1
    assert _value(after, "kenshin_gateways", state="unclaimed") == 1  # GW-B
    assert _value(after, "kenshin_ingest_lag_seconds") >= 0
    assert _value(after, "kenshin_webhook_backlog") == 0
    assert _value(after, "kenshin_email_backlog") == 0
    assert _value(after, "kenshin_db_pool_size") >= 1
    # The jobs ran at start: each counted, and when it last ran well.
    assert _value(after, "kenshin_job_runs_total", name="retention") >= 1
    assert _value(after, "kenshin_job_last_success_timestamp_seconds", name="retention") > 0

    # HTTP latency by route template, never the raw path (one series per gateway id would
    # have no end); /metrics itself counted once per scrape.
    gateway_id = fleet["gateway"].id
    earlier = scrape()  # counters are the process's: other tests' requests are in them too
    client.get(f"/api/v1/gateways/{gateway_id}")
    client.get("/no/such/page")
    series = scrape()
    routes = {dict(labels).get("route") for metric, labels in series if "_http_" in metric}
    assert "/api/v1/gateways/{gateway_id}" in routes
    assert "<unmatched>" in routes
    assert f"/api/v1/gateways/{gateway_id}" not in routes
    count = "kenshin_http_request_duration_seconds_count"

    def delta(**labels: str) -> float:
        return _value(series, count, **labels) - _value(earlier, count, **labels)

    assert delta(method="GET", route="/api/v1/gateways/{gateway_id}", status="401") == 1
    assert delta(method="GET", route="/metrics", status="200") == 1  # `earlier`, counted once


def test_metrics_are_off_without_a_token(database_url):
    from fastapi.testclient import TestClient

    from kenshin.server.app import create_app

    app = create_app(Settings(database_url=database_url, devices=False, jobs=False,
                              secret_key=base64.b64encode(bytes(32)).decode()))  # fmt: skip
    with TestClient(app) as client:
        assert client.get("/metrics", headers=AUTH).status_code == 404
        assert "/metrics" not in client.get("/api/v1/openapi.json").text


def test_the_request_id_is_echoed_and_on_every_log_line_of_the_request(client, world):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RequestContextFilter())
    watched = [logging.getLogger("kenshin.access"), logging.getLogger("kenshin.server")]
    old_levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        answer = client.post(
            "/api/v1/auth/login",
            json={"email": "nobody@a.test", "password": "x"},
            headers={"X-Request-ID": "edge-42"},
        )
        made = client.get("/livez")
        odd = client.get("/livez", headers={"X-Request-ID": "bad id\twith tab"})
    finally:
        for logger, level in zip(watched, old_levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert answer.status_code == 401 and answer.headers["X-Request-ID"] == "edge-42"
    assert len(made.headers["X-Request-ID"]) == 32  # made here when none came
    assert odd.headers["X-Request-ID"] != "bad id\twith tab"  # not taken as it came
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "kenshin.access"]
    login = next(line for line in access if line["path"] == "/api/v1/auth/login")
    assert login["request_id"] == "edge-42"
    assert login["status"] == 401 and login["method"] == "POST"
    assert login["route"] == "/api/v1/auth/login" and login["client"] == "testclient"
    assert isinstance(login["duration_ms"], float)
    assert all("time" in line and "level" in line for line in lines)


def test_text_and_json_log_lines_carry_the_request_id():
    for fmt in ("text", "json"):
        stream = io.StringIO()
        root = logging.getLogger()
        saved = (list(root.handlers), root.level)
        try:
            logs.configure("info", fmt, stream=stream)
            token = logs.request_id.set("abc123")
            try:
                logging.getLogger("kenshin.test").warning("hello %s", "there")
            finally:
                logs.request_id.reset(token)
            logging.getLogger("kenshin.test").warning("outside")
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            logs._configured = None
        first, second = stream.getvalue().splitlines()
        if fmt == "json":
            assert json.loads(first)["request_id"] == "abc123"
            assert json.loads(first)["message"] == "hello there"
            assert "request_id" not in json.loads(second)
        else:
            assert first == "WARNING kenshin.test: hello there [abc123]"
            assert second == "WARNING kenshin.test: outside"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_worker_answers_for_all_processes(database_url: str, tmp_path) -> None:
    """--workers 2: the workers and the background process share one multiprocess
    directory, so a scrape answered by either worker counts every request and the
    background's jobs."""
    env = {
        **os.environ,
        "KENSHIN_DATABASE_URL": database_url,
        "KENSHIN_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        "KENSHIN_MQTT_PORT": "0",
        "KENSHIN_METRICS_TOKEN": TOKEN,
        "KENSHIN_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KENSHIN_CONFIG", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from kenshin.cli.server import app; app()",
         "run", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if "listening on" in line:
                break
        else:
            pytest.fail(f"no URL printed: {proc.stderr.read()}")
        url = line.split("listening on ")[1].split()[0]
        count = "kenshin_http_request_duration_seconds_count"
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(20):
                assert http.get("/api/v1/auth/me").status_code == 401
            deadline = time.monotonic() + 30
            while True:  # a few scrapes: each may be answered by either worker
                totals = []
                for _ in range(4):
                    series = _series(http.get("/metrics", headers=AUTH).text)
                    totals.append(
                        _value(series, count, method="GET", route="/api/v1/auth/me", status="401")
                    )
                jobs = _value(series, "kenshin_job_runs_total", name="retention")
                if totals == [20.0] * 4 and jobs >= 1:
                    break
                assert time.monotonic() < deadline, (totals, jobs)
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            raise
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    # JSON lines from every process, the access log among them.
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "kenshin.access" and r.get("request_id") for r in records)


def test_odd_methods_and_paths_do_not_make_new_series(client):
    from kenshin.server.metrics import HTTP_LATENCY

    for n in range(3):
        client.request("BREW", f"/coffee/{n}")
    labels = {tuple(s.labels.values()) for m in HTTP_LATENCY.collect() for s in m.samples}
    assert not any("BREW" in values for values in labels)
    assert any(values[:2] == ("other", "<unmatched>") for values in labels)
