"""Prometheus metrics: `GET /metrics`, for a bearer token (setting `metrics_token`; none
set: no such page).

What each series is, and where it comes from:

- counted where it happens, in the process where it happens: HTTP requests and their
  latency per route template (`observe.RequestMiddleware`), ingest messages and readings
  after their commit (`ingested`, from the ingest), job runs, failures and durations
  (`jobs.JobRunner`);
- sampled every second in each process (`Sampler`): the database pool's connections, and
  where the ingest runs, its lag;
- read from the database at each scrape (`DatabaseCollector`), the same whichever process
  answers: gateways per state, quarantined messages, the webhook and e-mail backlogs.

With `--workers N` the server is N + 1 processes; the CLI gives them one directory for
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), so whichever worker
answers a scrape reports the counters of all of them, the background process's ingest and
jobs included (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine, func, select

from . import schema as s
from .problems import Problem

__all__ = [
    "HTTP_LATENCY",
    "DatabaseCollector",
    "Sampler",
    "ingested",
    "job_ran",
    "router",
    "use_multiprocess_dir",
]

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_LATENCY = Histogram(
    "kenshin_http_request_duration_seconds",
    "HTTP requests by route template (not the raw path), method and status, until the last "
    "byte of the answer",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
INGEST_MESSAGES = Counter(
    "kenshin_ingest_messages_total",
    "MQTT messages the ingest committed (and acknowledged), by kind: readings, status, "
    "event, result, quarantined",
    ["kind"],
)
INGEST_READINGS = Counter(
    "kenshin_ingest_readings_total",
    "Readings stored by the ingest: instant power, and fixed (30-minute) values",
    ["type"],
)
INGEST_LAG = Gauge(
    "kenshin_ingest_lag_seconds",
    "How long the oldest message taken from the broker has waited to be committed",
    multiprocess_mode="livemax",
)
# Jobs are labelled `name`: `job` is Prometheus' own label (the scrape job).
JOB_RUNS = Counter("kenshin_job_runs_total", "Runs of each periodic job that ended", ["name"])
JOB_FAILURES = Counter("kenshin_job_failures_total", "Runs of each job that failed", ["name"])
JOB_DURATION = Histogram(
    "kenshin_job_duration_seconds",
    "How long each job's runs took (failed ones included)",
    ["name"],
    buckets=(0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0),
)
JOB_LAST_SUCCESS = Gauge(
    "kenshin_job_last_success_timestamp_seconds",
    "When each job last ran to its end (Unix time)",
    ["name"],
    multiprocess_mode="max",
)
DB_POOL = Gauge(
    "kenshin_db_pool_connections",
    "The database pools' connections: checked_out (in use), idle (held, free), overflow "
    "(beyond the pool's size); summed over the server's live processes",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "kenshin_db_pool_size",
    "Connections the pools keep (db_pool_size), summed over the server's live processes",
    multiprocess_mode="livesum",
)


def ingested(outcome: Any) -> None:
    """One message the ingest committed (an `ingest.Outcome`), counted after the commit."""
    INGEST_MESSAGES.labels(outcome.kind).inc()
    # A count the driver could not give is -1 (an executemany's rowcount): not counted.
    if outcome.instant > 0:
        INGEST_READINGS.labels("instant").inc(outcome.instant)
    if outcome.fixed > 0:
        INGEST_READINGS.labels("fixed").inc(outcome.fixed)


def job_ran(name: str, seconds: float, failed: bool) -> None:
    JOB_RUNS.labels(name).inc()
    JOB_DURATION.labels(name).observe(seconds)
    if failed:
        JOB_FAILURES.labels(name).inc()
    else:
        JOB_LAST_SUCCESS.labels(name).set(time.time())


class DatabaseCollector:
    """What the database says at scrape time: the same from any process, so it is read
    by whichever answers, never added up across processes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.engine.connect() as conn:
                states = dict(
                    conn.execute(
                        select(s.gateways.c.state, func.count()).group_by(s.gateways.c.state)
                    ).all()
                )
                quarantined = conn.execute(select(func.count()).select_from(s.quarantine))
                quarantined = quarantined.scalar_one()
                pending = s.webhook_deliveries.c.state == "pending"
                hooks, oldest = conn.execute(
                    select(func.count(), func.min(s.webhook_deliveries.c.created_at)).where(pending)
                ).one()
                mails = conn.execute(
                    select(func.count()).where(
                        s.alert_notifications.c.state == "pending",
                        s.alert_notifications.c.channel == "email",
                    )
                ).scalar_one()
        except Exception as err:  # the database is down: /readyz says so; scrape the rest
            log.warning("metrics: cannot read the database's figures: %s", err)
            return
        family = GaugeMetricFamily("kenshin_gateways", "Gateways by state", labels=["state"])
        for state in s.GATEWAY_STATES:
            family.add_metric([state], states.get(state, 0))
        yield family
        yield GaugeMetricFamily(
            "kenshin_quarantine_messages",
            "Messages the ingest could not store, kept for inspection (GET /api/v1/quarantine)",
            value=quarantined,
        )
        yield GaugeMetricFamily(
            "kenshin_webhook_backlog", "Webhook deliveries waiting to be sent", value=hooks
        )
        age = 0.0 if oldest is None else max(0.0, (s.utcnow() - oldest).total_seconds())
        yield GaugeMetricFamily(
            "kenshin_webhook_backlog_oldest_seconds",
            "Age of the oldest webhook delivery waiting (0: none)",
            value=age,
        )
        yield GaugeMetricFamily(
            "kenshin_email_backlog", "Alert e-mails waiting to be sent", value=mails
        )


class Sampler:
    """Each second, this process's pool and (where it runs) the ingest's lag."""

    def __init__(self, app: Any, every_s: float = 1.0) -> None:
        self.app, self.every_s = app, every_s
        self._task: asyncio.Task | None = None

    def sample(self) -> None:
        pool = self.app.state.engine.pool
        with contextlib.suppress(AttributeError):  # SQLite's pools count less
            DB_POOL_SIZE.set(pool.size())
            checked_out = pool.checkedout()
            DB_POOL.labels("checked_out").set(checked_out)
            DB_POOL.labels("idle").set(pool.checkedin())
            DB_POOL.labels("overflow").set(max(0, pool.overflow()))
        service = self.app.state.device_service
        lag = getattr(service, "ingest_lag_s", None)
        if callable(lag):
            INGEST_LAG.set(lag())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.sample()
            await asyncio.sleep(self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if os.environ.get(MULTIPROC_ENV):  # this process's live gauges end with it
            from prometheus_client import multiprocess

            with contextlib.suppress(Exception):
                multiprocess.mark_process_dead(os.getpid())


def use_multiprocess_dir() -> tempfile.TemporaryDirectory | None:
    """For a server of several processes: a fresh directory for prometheus_client's
    multiprocess mode, named in the environment the processes started next inherit (they
    are spawned, so they import prometheus_client after this). Returns it, to be kept for
    the server's life (it is removed with it); None if one was already named."""
    if os.environ.get(MULTIPROC_ENV):
        return None
    directory = tempfile.TemporaryDirectory(prefix="kenshin-metrics-")
    os.environ[MULTIPROC_ENV] = directory.name
    return directory


class _Together:
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Any]:
        for collector in self.collectors:
            yield from collector.collect()


def exposition(app: Any) -> bytes:
    """The text exposition of every series, as this process sees them."""
    with contextlib.suppress(Exception):
        Sampler(app).sample()  # this process's own figures, fresh
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
        counted: Any = processes
    else:
        counted = REGISTRY
    return generate_latest(_Together(counted, DatabaseCollector(app.state.engine)))  # type: ignore[arg-type]


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus' text format, for ``Authorization: Bearer <metrics_token>``."""
    token = request.app.state.settings.metrics_token
    if token is None:
        raise Problem(404, "metrics are off: set metrics_token to turn them on")
    sent = request.headers.get("authorization", "")
    scheme, _, credentials = sent.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.encode(), expected):
        raise Problem(
            401, "metrics need 'Bearer <metrics_token>'", headers={"WWW-Authenticate": "Bearer"}
        )
    return Response(exposition(request.app), media_type=CONTENT_TYPE_LATEST)
