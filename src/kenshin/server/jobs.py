"""Periodic jobs of the server: each a name, a period and a function of (engine, now).

A job runs in a worker thread (they are blocking database and SMTP work), one run at a
time per job; a failing run is logged and tried again at the next period, never taking
the server down. Several servers on one database run each job once per period between
them (`job_runs`, claimed under an advisory lock on PostgreSQL), and each job is safe to run
twice all the same (forecasts are replaced, alerts deduplicated by the database, e-mails
claimed per row).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio.to_thread
import sqlalchemy.exc
from sqlalchemy import Engine, func, insert, select, update

from . import metrics
from . import schema as s
from .alerts.engine import run_rules
from .alerts.notify import SmtpConfig
from .alerts.notify import send_due as send_mail
from .analytics.retail import check_imbalance
from .analytics.store import refresh_tenant
from .dr.job import run_dr
from .ingest import trim_quarantine
from .metering.partitions import ensure_partitions
from .metering.repair import RepairPolicy, run_repairs
from .metering.retention import apply_retention
from .rollouts.service import run_rollouts
from .security import CredentialBox
from .settings import Settings
from .supervisor import Supervisor
from .webhooks.dispatcher import Dispatcher, trim_webhook_tables

__all__ = ["Job", "JobRunner", "server_jobs"]

log = logging.getLogger(__name__)
HOLDER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Job:
    name: str
    every_s: float
    run: Callable[[Engine, datetime], object]


def _each_tenant(step: Callable) -> Callable[[Engine, datetime], None]:
    """Run `step(conn, tenant_id, now)` for every tenant, each in its own transaction."""

    def run(engine: Engine, now: datetime) -> None:
        with engine.connect() as conn:
            tenants = conn.execute(select(s.tenants.c.id).order_by(s.tenants.c.id)).scalars()
            tenant_ids = list(tenants)
        for tenant_id in tenant_ids:
            try:
                with engine.begin() as conn:
                    step(conn, tenant_id, now)
            except Exception:  # one tenant's trouble must not starve the others
                log.exception("%s failed for tenant %s", getattr(step, "__name__", step), tenant_id)

    return run


def _forecast_then_imbalance(conn, tenant_id: int, now: datetime) -> None:
    refresh_tenant(conn, tenant_id, now)
    check_imbalance(conn, tenant_id, now)


def _trim_quarantine(settings: Settings) -> Callable[[Engine, datetime], None]:
    def run(engine: Engine, now: datetime) -> None:
        with engine.begin() as conn:
            trim_quarantine(
                conn, s.utcnow(), settings.quarantine_keep_days, settings.quarantine_max_rows
            )

    return run


def _partitions(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        ensure_partitions(conn, now)


def _retention(settings: Settings) -> Callable[[Engine, datetime], None]:
    def run(engine: Engine, now: datetime) -> None:
        apply_retention(engine, now, audit_keep_days=settings.audit_keep_days)
        trim_webhook_tables(
            engine,
            now,
            outbox_keep=timedelta(hours=settings.outbox_keep_hours),
            log_keep=timedelta(days=settings.webhook_log_keep_days),
        )

    return run


DR_EVERY_S = 60.0  # events start and end on half hours: a minute late at most
TIMESTAMP_EVERY_S = 3600.0  # the timestamp lives a day: a missed hour or two costs nothing


def _renew_timestamp(settings: Settings) -> Callable[[Engine, datetime], None]:
    """The update repository's online signing: a fresh timestamp (and a snapshot when it
    is due), so a gateway can tell a live repository from a frozen one."""
    from kenshin.updates.keys import KeyDirs
    from kenshin.updates.repository import Repository

    def run(engine: Engine, now: datetime) -> None:
        assert settings.updates_dir is not None
        repository = Repository(settings.updates_dir, KeyDirs(online=settings.updates_online_keys))
        timestamp = repository.refresh_timestamp().signed
        log.info("update timestamp %d signed, valid until %s", timestamp.version, timestamp.expires)

    return run


def server_jobs(
    settings: Settings, box: CredentialBox, wake: Callable[[], None] = lambda: None
) -> list[Job]:
    """The server's jobs; `wake` tells the device service there are commands to send."""
    jobs = [
        Job("partitions", 86400.0, _partitions),  # at start, then daily (PostgreSQL only)
        Job("retention", 3600.0, _retention(settings)),
        Job("quarantine", 3600.0, _trim_quarantine(settings)),
        Job("forecasts", settings.forecast_every_s, _each_tenant(_forecast_then_imbalance)),
        Job("alerts", settings.alerts_every_s, _each_tenant(run_rules)),
    ]
    if settings.repair_every_s > 0:
        policy = RepairPolicy(
            delay_s=settings.repair_delay_s,
            horizon_days=settings.repair_horizon_days,
            gateway_every_s=settings.repair_gateway_every_s,
            fleet_max=settings.repair_fleet_max,
            rescan_every_s=settings.repair_rescan_s,
            answer_within_s=settings.repair_answer_s,
        )

        def repair(engine: Engine, now: datetime) -> None:
            if run_repairs(engine, now, policy).requested:
                wake()  # the backfills go out now, not at the pushers' next round

        jobs.append(Job("gap repair", settings.repair_every_s, repair))

    def rollouts(engine: Engine, now: datetime) -> None:
        if run_rollouts(engine, now).asked:
            wake()  # the stage's update commands go out now

    jobs.append(Job("rollouts", settings.rollouts_every_s, rollouts))

    def dr(engine: Engine, now: datetime) -> None:
        if run_dr(engine, now).raised:
            wake()  # events a rule raised go out now

    jobs.append(Job("dr", DR_EVERY_S, dr))
    if settings.updates_dir is not None and settings.updates_online_keys is not None:
        jobs.append(Job("update timestamp", TIMESTAMP_EVERY_S, _renew_timestamp(settings)))
    if settings.webhooks:  # sends run in the dispatcher's own threads, past the job's run
        dispatcher = Dispatcher(
            box,
            allow_private=settings.webhooks_allow_private,
            concurrency=settings.webhook_concurrency,
        )
        jobs.append(Job("webhooks", settings.webhook_every_s, dispatcher))
    if settings.smtp_host:
        smtp = SmtpConfig(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_starttls,
            settings.smtp_username,
            settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            settings.smtp_from,
        )
        jobs.append(Job("alert e-mails", 30.0, lambda engine, now: send_mail(engine, smtp, now)))
    return jobs


@dataclass
class JobRunner:
    """Each job's loop runs supervised: a failing run is logged and counted, and the loop
    itself, should it die, is started again (see `supervisor`)."""

    engine: Engine
    jobs: list[Job]
    clock: Callable[[], datetime] = s.utcnow
    supervisor: Supervisor = field(default_factory=Supervisor)
    runs: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # another server had run it

    def _claim(self, job: Job) -> bool:
        """This period's run of `job`, unless a server on the same database has started one
        within the last 0.9 periods. On PostgreSQL the check and the claim hold a
        transaction-level advisory lock, so two servers cannot both claim."""
        now = s.utcnow()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                key = zlib.crc32(f"kenshin job {job.name}".encode()) - 2**31
                conn.execute(select(func.pg_advisory_xact_lock(key)))
            last = conn.execute(
                select(s.job_runs.c.started_at).where(s.job_runs.c.name == job.name)
            ).scalar()
            if last is not None and (now - last).total_seconds() < 0.9 * job.every_s:
                return False
            values = {"started_at": now, "holder": HOLDER}
            if last is None:
                conn.execute(insert(s.job_runs).values(name=job.name, **values))
            else:
                conn.execute(
                    update(s.job_runs).where(s.job_runs.c.name == job.name).values(**values)
                )
        return True

    async def start(self) -> None:
        for job in self.jobs:
            self.supervisor.start(f"job {job.name}", lambda job=job: self._loop(job))

    async def stop(self) -> None:
        await self.supervisor.stop()

    def report(self) -> dict[str, dict]:
        return {
            job.name: {
                "runs": self.runs.get(job.name, 0),
                "failures": self.failures.get(job.name, 0),
                "last_error": self.last_error.get(job.name),
                "skipped": self.skipped.get(job.name, 0),
            }
            for job in self.jobs
        }

    async def _loop(self, job: Job) -> None:
        while True:
            began: float | None = None
            try:
                if await anyio.to_thread.run_sync(self._claim, job):
                    began = time.perf_counter()
                    await anyio.to_thread.run_sync(job.run, self.engine, self.clock())
                    self.runs[job.name] = self.runs.get(job.name, 0) + 1
                    metrics.job_ran(job.name, time.perf_counter() - began, failed=False)
                else:
                    self.skipped[job.name] = self.skipped.get(job.name, 0) + 1
            except Exception as err:
                self.failures[job.name] = self.failures.get(job.name, 0) + 1
                self.last_error[job.name] = f"{type(err).__name__}: {err}"[:300]
                took = 0.0 if began is None else time.perf_counter() - began
                metrics.job_ran(job.name, took, failed=True)  # a failed claim counts too
                if isinstance(err, sqlalchemy.exc.OperationalError):
                    # The database unreachable: the operator's fault is the database, which
                    # readyz already reports; one line, not a traceback, each period.
                    log.warning("job %s: the database is unreachable (%s); again in %.0f s",
                                job.name, str(err.orig or err).strip().splitlines()[0],
                                job.every_s)  # fmt: skip
                else:
                    log.exception("job %s failed; it runs again in %.0f s", job.name, job.every_s)
            await asyncio.sleep(job.every_s)
