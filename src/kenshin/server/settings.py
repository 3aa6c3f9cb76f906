"""Server settings: defaults, then a TOML file, then `KENSHIN_*` environment variables.

Every setting has one name, used as the TOML key and, upper-cased after ``KENSHIN_``, as
the environment variable::

    # kenshin.toml
    database_url = "postgresql://kenshin@db/kenshin"
    host = "0.0.0.0"
    port = 8080
    secret_key_file = "/etc/kenshin/secret.key"
    broker = "mqtt://ingest:s3cret@mqtt.example.net:1883"
    log_level = "info"

    $ KENSHIN_PORT=9000 kenshin server run --config kenshin.toml   # port 9000 wins

The file is named with ``--config`` or ``KENSHIN_CONFIG``. Unknown keys in the file are
errors (a typo must not pass silently); unknown ``KENSHIN_*`` variables are left to the
other parts that read them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from .broker_address import BrokerEndpoint, parse_broker, parse_nodes

__all__ = ["ENV_PREFIX", "BrokerEndpoint", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "KENSHIN_"
CONFIG_ENV = "KENSHIN_CONFIG"
DEFAULT_KEY_FILE_NAME = "kenshin-secret.key"

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class SettingsError(ValueError):
    """The settings cannot be used; the message says which one and why."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(
        "sqlite:///./kenshin.db", description="SQLAlchemy URL: sqlite:///FILE or postgresql://"
    )
    host: str = Field("127.0.0.1", description="HTTP address to listen on")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port; 0 picks a free one")
    secret_key: SecretStr | None = Field(
        None, description="base64 AES-256 key for credentials at rest (wins over the file)"
    )
    secret_key_file: Path | None = Field(
        None,
        description="file holding the key; made (mode 0600) on first start when missing. "
        "Default: kenshin-secret.key beside the SQLite database, or in the current directory",
    )
    broker: str = Field(
        "embedded",
        description="'embedded' (amqtt in this process), 'mosquitto' (a Mosquitto child process "
        "with generated password/ACL files) or an external mqtt[s]://user:pass@host:port",
    )
    broker_auth: Literal["dynsec", "http"] = Field(
        "dynsec",
        description="an external broker's gateway logins: 'dynsec' (Mosquitto's dynamic-security "
        "plugin, told each credential over $CONTROL by the service account) or 'http' (the broker "
        "asks the server: RabbitMQ's HTTP auth backend, see docs/scaling.md)",
    )
    broker_nodes: str | None = Field(
        None,
        description="an external broker's other nodes, 'host:port,host:port' (a cluster): the "
        "server and the gateways (told at enrollment) go to the next when one is unreachable",
    )
    broker_amqp: str | None = Field(
        None,
        description="RabbitMQ: 'amqp://user:pass@host:port/,amqp://...' of its nodes; the "
        "ingest then consumes the fleet's uplink from a replicated quorum queue",
    )
    broker_management: str | None = Field(
        None,
        description="RabbitMQ: its management API, 'http://user:pass@host:15672' (revoking a "
        "gateway's credential also closes its connection)",
    )
    first_connections_per_s: float | None = Field(
        None,
        ge=0,
        description="gateways' first broker connections a second, paced by a delay named in "
        "each enrollment answer (docs/scaling.md); per server process; 0: not paced. Default: "
        "with broker_auth 'http' (the RabbitMQ cluster: its logins are the limit) 60 on clean "
        "gateway sessions and 15 on persistent ones (a replicated queue each), else not paced",
    )
    gateway_sessions: Literal["persistent", "clean"] | None = Field(
        None,
        description="gateways' MQTT sessions, told at enrollment: 'persistent' (the broker keeps "
        "a gateway's commands while it is away) or 'clean' (it keeps nothing per gateway; the "
        "server sends a command again when the gateway is heard from without its result). "
        "Default: 'clean' with broker_auth 'http' (on the RabbitMQ cluster a persistent session "
        "is a replicated queue per gateway: docs/scaling.md), otherwise 'persistent'",
    )
    role: Literal["all", "api", "ingest", "jobs"] = Field(
        "all",
        description="what this process runs: 'all' (one process, the default), or one role of a "
        "scaled-out server: 'api' (HTTP), 'ingest' (MQTT ingest and pushers), 'jobs' (periodic "
        "jobs); split roles need an external broker and PostgreSQL",
    )
    mqtt_host: str = Field("127.0.0.1", description="address the embedded/managed broker binds")
    mqtt_port: int = Field(
        1883,
        ge=0,
        le=65535,
        description="its port (taken by another process: an error naming it); 0 picks a free "
        "one, kept in mosquitto_dir so that a restart serves the same",
    )
    mqtt_public_host: str | None = Field(
        None,
        description="broker host told to gateways at enrollment (default: the host the "
        "server's ingest connects to)",
    )
    mqtt_public_port: int | None = Field(
        None, ge=1, le=65535, description="broker port told to gateways (default: the ingest's)"
    )
    mqtt_public_tls: bool | None = Field(
        None,
        description="whether gateways use TLS to the broker (default: as the ingest does); "
        "e.g. Mosquitto's TLS listener for gateways, a loopback one for the ingest",
    )
    devices: bool = Field(True, description="run the MQTT side: broker, ingest, pushers")
    mosquitto_dir: Path | None = Field(
        None, description="broker 'mosquitto': its config and persistence (default: a temp dir)"
    )
    node_name: str = Field(
        "1",
        pattern=r"^[A-Za-z0-9_-]{1,16}$",
        description="this server among several: its ingest's MQTT session is kenshin-ingest-<node>",
    )
    heartbeat_s: float = Field(1800.0, gt=0, description="gateways' heartbeat, for lost contact")
    ready_max_ingest_lag_s: float = Field(
        120.0, gt=0, description="/readyz fails while readings wait longer to be stored"
    )
    log_level: LogLevel = "info"
    log_format: Literal["text", "json"] = Field(
        "text",
        description="log lines as text, or one JSON object each (time, level, logger, message, "
        "request_id, fields) for a log collector",
    )
    access_log: bool = Field(True, description="one log line per HTTP request (kenshin.access)")
    metrics_token: SecretStr | None = Field(
        None,
        description="bearer token that GET /metrics (Prometheus) asks for; none: /metrics is off",
    )
    audit_keep_days: float = Field(
        730.0,
        ge=0,
        description="audit log entries kept this long by the retention job (0: forever)",
    )
    auto_migrate: bool = Field(True, description="apply database migrations at start")
    session_hours: float = Field(12.0, gt=0, description="lifetime of a login session")
    session_cookie_secure: bool = Field(
        False,
        description="send the session cookie over HTTPS only, always (it is anyway when the "
        "request came over HTTPS or public_url is https)",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+/?$",
        description="the address browsers reach the server at behind a proxy "
        "(https://kenshin.example.com): its origin is accepted as this server's",
    )
    jobs: bool = Field(
        True, description="run the periodic jobs: forecasts, anomaly checks, alert e-mails"
    )
    forecast_every_s: float = Field(1800.0, gt=0, description="tenant forecasts refreshed")
    alerts_every_s: float = Field(300.0, gt=0, description="anomaly rules run")
    rollouts_every_s: float = Field(
        60.0,
        gt=0,
        description="how often the rollouts job advances stages, asks gateways and halts a "
        "failing stage (docs/updates.md)",
    )
    repair_every_s: float = Field(
        300.0, ge=0, description="missing half hours looked for and asked of gateways (0: off)"
    )
    repair_delay_s: float = Field(
        3600.0, gt=0, description="a missing half hour younger than this is not yet a gap"
    )
    repair_horizon_days: float = Field(
        45.0, gt=0, description="how far back meters keep history: older gaps are lost"
    )
    repair_gateway_every_s: float = Field(
        600.0, gt=0, description="at least this between two repair requests to one meter"
    )
    repair_fleet_max: int = Field(100, ge=1, description="repair requests per run, fleet-wide")
    quarantine_keep_days: float = Field(30.0, gt=0, description="quarantined messages kept")
    quarantine_max_rows: int = Field(100_000, ge=1, description="at most this many kept")
    repair_answer_s: float = Field(
        300.0, gt=0, description="a repair request unanswered this long is asked again"
    )
    repair_rescan_s: float = Field(
        86400.0, gt=0, description="each meter looked at again from the history's start"
    )
    smtp_host: str | None = Field(None, description="SMTP server for alert e-mails (none: off)")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field("kenshin@localhost", description="the alert e-mails' sender")
    webhooks_allow_private: bool = Field(
        False,
        description="let webhooks reach loopback/private addresses (tests, demos, on-premises)",
    )
    webhooks: bool = Field(True, description="send webhooks (a job: needs `jobs` on too)")
    webhook_every_s: float = Field(5.0, gt=0, description="webhook outbox and sends checked")
    outbox_keep_hours: float = Field(
        24.0,
        gt=0,
        description="webhook outbox rows no dispatcher took in this time are deleted "
        "(by the retention job, on every node)",
    )
    webhook_log_keep_days: float = Field(
        30.0, gt=0, description="delivered and dead webhook deliveries kept this long"
    )
    webhook_concurrency: int = Field(
        8, ge=1, le=256, description="receivers sent to at once (one slow one holds only itself)"
    )
    weather_csv: Path | None = Field(
        None, description="hourly weather (time,irradiance_w_m2,temperature_c[,site_id])"
    )
    updates_dir: Path | None = Field(
        None,
        description="the gateways' signed update repository (`kenshin release init`), served "
        "read-only at /updates/ (docs/updates.md); none: not served",
    )
    updates_online_keys: Path | None = Field(
        None,
        description="the update repository's online key directory (snapshot.pem, "
        "timestamp.pem): with it, the server renews the timestamp every hour, so gateways "
        "never find it expired (docs/updates.md); none: run `kenshin release "
        "refresh-timestamp` yourself",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="HTTP worker processes; beyond 1, one more process runs the MQTT side "
        "and the jobs, and the workers serve the API only (see docs/api.md)",
    )
    db_pool_size: int = Field(
        10,
        ge=1,
        le=500,
        description="database connections each process keeps, and the requests it lets "
        "use one at a time (more wait their turn)",
    )
    db_pool_overflow: int = Field(
        10,
        ge=0,
        le=500,
        description="connections beyond db_pool_size for what takes its own: ingest, jobs, "
        "streamed CSV, health checks",
    )
    db_wait_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="how long a request waits for its database turn before a 503 with Retry-After",
    )

    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="largest request body (bytes); past it a 413 before anything is read",
    )
    max_upload_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="largest body of an upload (plans as JSON or CSV, the factory's gateways)",
    )
    login_limit: str = Field(
        "10/minute;50/hour",
        description="logins per account (e-mail), panel and API together; past it a 429 "
        "with Retry-After (the `limits` notation: N/second|minute|hour|day, ';' between)",
    )
    login_limit_per_client: str = Field(
        "30/minute;300/hour", description="logins per client address"
    )
    enroll_limit_per_client: str = Field(
        "600/minute",
        description="enrollment requests (challenge and enroll) per client address (a site's "
        "gateways behind one NAT share it)",
    )
    enroll_limit: str = Field("10/minute", description="enrollment requests per gateway serial")
    password_reset_limit: str = Field(
        "10/hour", description="password resets of one user (PATCH /users/{id} with a password)"
    )
    password_reset_limit_per_client: str = Field(
        "30/hour", description="password resets per client address"
    )

    @field_validator(
        "login_limit",
        "login_limit_per_client",
        "enroll_limit_per_client",
        "enroll_limit",
        "password_reset_limit",
        "password_reset_limit_per_client",
    )
    @classmethod
    def _check_rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("a rate limit like '10/minute' or '10/minute;50/hour'") from None
        return value

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        value = value.strip()
        if value not in ("embedded", "mosquitto"):
            parse_broker(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def secret_key_path(self) -> Path:
        """Where the secret key file is (or will be made)."""
        if self.secret_key_file is not None:
            return self.secret_key_file
        url = make_url(self.database_url)
        database = url.database or ""
        file_database = database not in ("", ":memory:") and not database.startswith("file:")
        if url.get_backend_name() == "sqlite" and file_database:
            return Path(database).parent / DEFAULT_KEY_FILE_NAME
        return Path(DEFAULT_KEY_FILE_NAME)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL (sqlite:///FILE or postgresql://...)") from None
        if url.get_backend_name() not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("the database must be SQLite or PostgreSQL")
        return value

    @model_validator(mode="after")
    def _roles_need_an_external_broker(self) -> Settings:
        if self.role != "all" and self.broker in ("embedded", "mosquitto"):
            raise ValueError(
                f"role {self.role!r}: a split server needs an external broker that every role "
                "reaches (broker = 'mqtt://user:pass@host:port'); 'embedded' and 'mosquitto' "
                "live inside one process (use role 'all')"
            )
        return self

    @property
    def runs_api(self) -> bool:
        return self.role in ("all", "api")

    @property
    def runs_devices(self) -> bool:
        """The MQTT side: broker (embedded or managed), ingest, pushers."""
        return self.devices and self.role in ("all", "ingest")

    @property
    def runs_jobs(self) -> bool:
        return self.jobs and self.role in ("all", "jobs")

    @property
    def clean_gateway_sessions(self) -> bool:
        """Whether gateways are told to connect with a clean session."""
        sessions = self.gateway_sessions or (
            "clean" if self.broker_auth == "http" else "persistent"
        )
        return sessions == "clean"

    @property
    def paced_connections_per_s(self) -> float | None:
        """This process's share of `first_connections_per_s` (each API worker paces its own
        enrollments), or None: not paced."""
        rate = self.first_connections_per_s
        if rate is None and self.broker_auth == "http":  # the cluster, measured: scaling.md
            rate = 60.0 if self.clean_gateway_sessions else 15.0
        rate = rate or 0.0
        return rate / self.workers if rate > 0 else None

    @property
    def broker_alternates(self) -> list[tuple[str, int]]:
        """`broker_nodes` as (host, port) pairs."""
        return parse_nodes(self.broker_nodes)

    @field_validator("broker_nodes")
    @classmethod
    def _check_nodes(cls, value: str | None) -> str | None:
        parse_nodes(value)
        return value

    @property
    def broker_endpoint(self) -> BrokerEndpoint | None:
        """The external broker, or None for the embedded one."""
        return None if self.broker in ("embedded", "mosquitto") else parse_broker(self.broker)


def _env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from defaults < TOML file < environment < `overrides` (None: not given).

    `env` defaults to `os.environ`; `config_file` to ``$KENSHIN_CONFIG`` if set.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if config_file is None and env.get(CONFIG_ENV):
        config_file = env[CONFIG_ENV]
    if config_file is not None:
        values.update(_read_toml(Path(config_file)))
    for name in Settings.model_fields:
        if _env_name(name) in env:
            values[name] = env[_env_name(name)]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        raise SettingsError(_describe(err)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise SettingsError(f"config file {path}: {err}") from None
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def _describe(err: ValidationError) -> str:
    problems = []
    for e in err.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in e["loc"])
        problems.append(f"{field} ({_env_name(field)}): {e['msg']}")
    return "invalid settings: " + "; ".join(problems)
