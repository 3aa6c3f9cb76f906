"""`kenshin server ...`: run the server, migrate its database, make the first administrator.

Settings come from defaults, then ``--config FILE`` (or ``$KENSHIN_CONFIG``), then
``KENSHIN_*`` environment variables, then these options (see `kenshin.server.settings`).
Exit codes: 0 done, 1 failed, 2 bad settings or usage.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    no_args_is_help=True,
    help="The Kenshin server: REST API, device management and metering.",
    add_completion=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file (default: $KENSHIN_CONFIG). Environment variables win.",
        dir_okay=False,
    ),
]


def _settings(config: Path | None, **overrides: Any):
    from kenshin.server.settings import SettingsError, load_settings

    try:
        return load_settings(config, **overrides)
    except SettingsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _configure_logging(level: str, fmt: str = "text") -> None:
    from kenshin.server.logs import configure

    configure(level, fmt)  # text or JSON lines, with the request id (kenshin.server.logs)


def _redacted(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 takes a free one, with no window for anyone to steal it."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, backlog=2048)


@app.command("run")
def run(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="HTTP worker processes (default: the workers setting, 1). Beyond 1, one more "
            "process runs the MQTT side and the jobs.",
        ),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(
            help="What this process runs: all (default), or one role of a scaled-out server: "
            "api, ingest or jobs (these need an external broker; see docs/scaling.md).",
        ),
    ] = None,
) -> None:
    """Run the server until Ctrl-C; print its URL once it listens."""
    import uvicorn

    from kenshin.ports import PortTaken, require_free_tcp_port
    from kenshin.server.app import create_app
    from kenshin.server.security import SecretKeyError

    settings = _settings(config, host=host, port=port, workers=workers, role=role)
    _configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        _run_workers(settings)
        return
    try:
        application = create_app(settings)
    except SecretKeyError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if application.state.secret_key_generated:
        typer.echo(
            f"Generated a new secret key in {application.state.secret_key_source}: keep it "
            "with the database; without it stored B-route credentials cannot be read."
        )
    if settings.runs_devices and settings.broker == "embedded" and settings.mqtt_port:
        try:  # before anything starts: a clear line, not a failed startup's traceback
            require_free_tcp_port(settings.mqtt_host, settings.mqtt_port, "MQTT")
        except PortTaken as err:
            typer.echo(f"error: {err}; free it or set KENSHIN_MQTT_PORT", err=True)
            raise typer.Exit(1) from None
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as err:
        typer.echo(f"error: cannot listen on {settings.host}:{settings.port}: {err}", err=True)
        raise typer.Exit(1) from None
    url = _url(settings.host, sock.getsockname()[1])

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                _banner(url, settings, application.state.device_service)

    server = Server(
        uvicorn.Config(application, log_level=settings.log_level, lifespan="on", access_log=False)
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it shut down gracefully for
    except SystemExit as exc:
        if exc.code not in (0, None):
            typer.echo("error: the server did not start (see the log above)", err=True)
            raise typer.Exit(1) from None
    finally:
        sock.close()
    if not server.started:
        raise typer.Exit(1)


def _banner(url: str, settings, service) -> None:
    if settings.role == "all":
        typer.echo(f"Kenshin server listening on {url}  (API docs: {url}/api/v1/docs)")
    else:
        typer.echo(f"Kenshin server, role {settings.role}, listening on {url}")
    if service is not None and service.endpoint is not None:
        endpoint = service.endpoint
        typer.echo(f"MQTT broker ({service.mode}) on {endpoint.host}:{endpoint.port}")
    typer.echo(f"database {_redacted(settings.database_url)}; Ctrl-C stops.")


def _run_workers(settings) -> None:
    """`settings.workers` API worker processes and one background process (see
    kenshin.server.workers): migrate, start the background, then the workers."""
    import functools
    import multiprocessing

    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError
    from uvicorn.supervisors import Multiprocess

    from kenshin.server import workers
    from kenshin.server.db import migrate
    from kenshin.server.metrics import use_multiprocess_dir
    from kenshin.server.security import SecretKeyError, load_secret_key

    try:  # the key made once here, not raced for by every process
        secret = load_secret_key(
            settings.secret_key.get_secret_value() if settings.secret_key else None,
            settings.secret_key_path,
        )
        if settings.auto_migrate:
            migrate(settings.database_url)
    except SecretKeyError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except SQLAlchemyError as err:
        typer.echo(f"error: {_redacted(settings.database_url)}: {err}", err=True)
        raise typer.Exit(1) from None
    if secret.generated:
        typer.echo(
            f"Generated a new secret key in {secret.source}: keep it with the database; "
            "without it stored B-route credentials cannot be read."
        )
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as err:
        typer.echo(f"error: cannot listen on {settings.host}:{settings.port}: {err}", err=True)
        raise typer.Exit(1) from None
    url = _url(settings.host, sock.getsockname()[1])
    # One directory for every process's metrics, so any worker's /metrics tells them all.
    metrics_dir = use_multiprocess_dir()  # noqa: F841  (removed when the server ends)
    spawn = multiprocessing.get_context("spawn")  # uvicorn's workers are spawned too
    background = None
    relayed = None
    if settings.runs_devices or settings.runs_jobs:
        ours, theirs = spawn.Pipe(duplex=False)
        background = spawn.Process(
            target=workers.run_background,
            args=(settings, theirs, settings.log_level),
            name="kenshin-background",
        )
        background.start()
        theirs.close()
        try:
            relayed = ours.recv()  # once its lifespan runs: the broker's endpoint
        except EOFError:
            background.join()
            sock.close()
            typer.echo("error: the background process did not start (see the log above)", err=True)
            raise typer.Exit(1) from None

    class Supervisor(Multiprocess):
        background_died = False

        def init_processes(self) -> None:
            super().init_processes()
            if all(p.wait_until_ready(60, self.should_exit) for p in self.processes):
                _banner(url, settings, relayed)
                extra = "; devices and jobs in one more process" if background else ""
                typer.echo(f"{settings.workers} API workers{extra}.")

        def keep_subprocess_alive(self) -> None:
            super().keep_subprocess_alive()
            # Without it the API would run on with no ingest and no jobs, unseen: stop
            # the whole server (exit 1), for its service manager to start it again.
            if (
                background is not None
                and not background.is_alive()
                and not self.should_exit.is_set()
            ):
                typer.echo("error: the background process (MQTT side, jobs) stopped", err=True)
                self.background_died = True
                self.should_exit.set()

    config = uvicorn.Config(
        functools.partial(workers.api_worker_app, settings, relayed),
        factory=True,
        workers=settings.workers,
        log_level=settings.log_level,
        lifespan="on",
        access_log=False,
    )
    supervisor = Supervisor(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
        if background is not None:
            background.terminate()  # SIGTERM: its lifespan stops the jobs and the broker
            background.join(30)
    if supervisor.background_died:
        raise typer.Exit(1)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@app.command("migrate")
def migrate_command(config: ConfigOption = None) -> None:
    """Bring the database to the newest schema (the server also does this when it starts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from kenshin.server.db import migrate

    settings = _settings(config)
    _configure_logging("warning")
    try:
        revision = migrate(settings.database_url)
    except SQLAlchemyError as err:
        typer.echo(f"error: {_redacted(settings.database_url)}: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"database {_redacted(settings.database_url)} is at revision {revision}")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The administrator's email (login name).")],
    password: Annotated[
        str | None, typer.Option(help="The password (asked for if omitted; 8 characters or more).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Make (or reset) a platform administrator, who can then create tenants."""
    from sqlalchemy.exc import SQLAlchemyError

    from kenshin.server.bootstrap import ensure_admin
    from kenshin.server.db import make_engine, migrate

    settings = _settings(config)
    if "@" not in email:
        typer.echo("error: --email must be an email address", err=True)
        raise typer.Exit(2)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        typer.echo("error: the password needs 8 characters or more", err=True)
        raise typer.Exit(2)
    _configure_logging("warning")
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        user_id, created = ensure_admin(engine, email, password)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as err:
        typer.echo(f"error: {_redacted(settings.database_url)}: {err}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    what = "created" if created else "updated (new password, enabled)"
    typer.echo(f"platform administrator {email.strip().lower()} (id {user_id}) {what}")


@app.command("retention")
def retention_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Apply every tenant's retention now (the server also does it hourly): delete rows past
    a tenant's days, drop months past every tenant's, make the months ahead."""
    import json
    from datetime import UTC, datetime

    from sqlalchemy.exc import SQLAlchemyError

    from kenshin.server.db import make_engine, migrate
    from kenshin.server.metering.partitions import ensure_partitions
    from kenshin.server.metering.retention import apply_retention

    settings = _settings(config)
    _configure_logging("warning")
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        migrate(engine)
        made: list[str] = []
        if not dry_run:
            with engine.begin() as conn:
                made = ensure_partitions(conn, now)
        report = apply_retention(
            engine, now, dry_run=dry_run, audit_keep_days=settings.audit_keep_days
        )
    except SQLAlchemyError as err:
        typer.echo(f"error: {_redacted(settings.database_url)}: {err}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    result = {"dry_run": dry_run, "deleted": report.deleted, "dropped": report.dropped,
              "made": made}  # fmt: skip
    if json_output:
        typer.echo(json.dumps(result))
        return
    verb = "would delete" if dry_run else "deleted"
    rows = ", ".join(f"{n:,} from {t}" for t, n in sorted(report.deleted.items())) or "no rows"
    typer.echo(f"{verb} {rows}")
    typer.echo(f"partitions dropped: {', '.join(report.dropped) or 'none'}; made: {len(made)}")


@app.command("mosquitto-config")
def mosquitto_config(
    directory: Annotated[Path, typer.Argument(help="Where to write mosquitto.conf and its state.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="The broker's port.")] = 1883,
    host: Annotated[str, typer.Option(help="The address it listens on.")] = "127.0.0.1",
    public_host: Annotated[
        str | None, typer.Option(help="The host the servers reach it by (default: --host).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing state (its gateways re-enroll).")
    ] = False,
    user: Annotated[
        str | None,
        typer.Option(
            help="The account Mosquitto runs as when started by root (default: this one)."
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="The result as JSON.")] = False,
) -> None:
    """Set up an external Mosquitto for a scaled-out server: a config with the
    dynamic-security plugin and a state holding the server's service account. Run Mosquitto
    with `mosquitto -c DIRECTORY/mosquitto.conf`; give every server role the printed broker
    setting and broker_auth = "dynsec". Gateways' credentials then reach the broker one by
    one through its $CONTROL API: no file rewrites, no reloads."""
    import json
    import os
    import pwd
    import secrets

    from kenshin.server.broker import dynsec
    from kenshin.server.broker.access import Account, PrincipalKind, hash_password
    from kenshin.server.broker.mosquitto_config import (
        DYNSEC_FILE_NAME,
        MosquittoListener,
        write_mosquitto_config,
    )
    from kenshin.server.runtime import SERVICE_USER

    if (directory / DYNSEC_FILE_NAME).exists() and not force:
        typer.echo(
            f"error: {directory / DYNSEC_FILE_NAME} exists and holds the gateways' broker "
            "credentials; pass --force to start it over (every gateway then enrolls again)",
            err=True,
        )
        raise typer.Exit(1)
    try:
        dynsec.find_plugin()
    except FileNotFoundError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    password = secrets.token_urlsafe(24)
    service = Account(SERVICE_USER, hash_password(password), PrincipalKind.SERVICE)
    files = write_mosquitto_config(
        directory,
        [service],
        [MosquittoListener(port, host=host)],
        user=user or (pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None),
        dynamic_security=True,
    )
    url = f"mqtt://{SERVICE_USER}:{password}@{public_host or host}:{port}"
    if json_output:
        typer.echo(
            json.dumps({"config": str(files.config), "broker": url, "broker_auth": "dynsec"})
        )
        return
    typer.echo(f"wrote {files.config} and {directory / DYNSEC_FILE_NAME}")
    typer.echo(f"start it:   mosquitto -c {files.config}")
    typer.echo(f'servers:    broker = "{url}"  broker_auth = "dynsec"  (keep it secret)')
