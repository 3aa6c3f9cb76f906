"""Gateway settings: tenant defaults plus per-gateway overrides, versioned and audited.

Every change writes a new row with the next version number of the tenant (one sequence
for defaults and overrides alike), so a gateway's effective version — the newest of its
tenant's default and its own override — only ever grows, and the heartbeat's applied
version says exactly which change a gateway runs. Changing a meter (its link or B-route
credentials) writes a new override too, so it reaches the gateway the same way.

The effective settings are the merged values, plus the `meter` section built from the
registry with the B-route credentials opened (in memory: the API masks them). What
`k/<gw>/g` carries, retained by the broker, is `for_wire`: the same with the credentials
sealed to the key of the gateway's running agent (`kenshin.wire.sealing`), never in clear.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import Connection, Row, func, insert, select

from kenshin.wire import Settings
from kenshin.wire.dr_settings import DrSettings
from kenshin.wire.sealing import seal

from ..accounts import audit
from ..events import record_event
from ..schema_base import utcnow
from ..security import CredentialBox
from . import tables as t
from .registry import meter_link_settings, meters_of_gateway

DEFAULTS: dict[str, Any] = {
    "poll": {"instant_interval_s": 60, "fixed_delay_s": 20},
    "uplink": {"batch_delay_s": 60},
    "heartbeat_s": 1800,
}
MANAGED_KEYS = {"meter"}  # built from the registry, never set directly
SEALED_KEYS = ("broute_id", "broute_password")  # of the meter section


class SettingsError(ValueError):
    pass


# What a gateway understands, checked when written: a value the agent or the wire would
# refuse must be a 422 to the person who typed it, not a push that fails later. Every key
# may be None (the merge deletes it, back to the default).
_STRICT = ConfigDict(extra="forbid", strict=True)
Seconds = Field(None, gt=0, le=7 * 86400)


class _Poll(BaseModel):
    model_config = _STRICT
    instant_interval_s: float | None = Seconds
    currents_every_s: float | None = Seconds
    fixed_delay_s: float | None = Field(None, ge=0, le=1800)
    fixed_retry_s: float | None = Seconds
    fixed_give_up_s: float | None = Seconds
    initial_backfill_days: int | None = Field(None, ge=0, le=99)


class _Uplink(BaseModel):
    model_config = _STRICT
    batch_delay_s: float | None = Field(None, ge=0, le=1800)
    max_delay_s: float | None = Seconds


# A recipe (docs/updates.md, Recipes): its name as published (``recipes/<name>``), with
# the options its code reads; None deletes it in a merge, so the gateway stops it.
RecipeName = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$")]
OptionName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
OptionValue = Annotated[str, StringConstraints(max_length=200)] | bool | int | float
RecipeOptions = Annotated[dict[OptionName, OptionValue], Field(max_length=16)]


class SettingsValues(BaseModel):
    """The settings a tenant or gateway may set (the meter section is the registry's)."""

    model_config = _STRICT
    poll: _Poll | None = None
    uplink: _Uplink | None = None
    heartbeat_s: float | None = Field(None, ge=10, le=86400)
    status_max_s: float | None = Field(None, ge=60, le=7 * 86400)
    # After a burst of changed statuses (link, LQI), at most one per this long.
    status_refill_s: float | None = Field(None, ge=10, le=86400)
    recipes: dict[RecipeName, RecipeOptions | None] | None = Field(None, max_length=8)
    dr: DrSettings | None = None  # demand response: the policy and where devices are


def check_values(values: dict[str, Any]) -> None:
    """SettingsError naming the first field that a gateway could not take."""
    try:
        SettingsValues.model_validate(values)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) or '""' for part in first["loc"]) or "values"
        raise SettingsError(f"{where}: {first['msg']}") from None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins key by key; nested maps merge; None deletes."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _latest(conn: Connection, tenant_id: int, gateway_id: int | None) -> Row | None:
    gateway = (
        t.settings.c.gateway_id.is_(None)
        if gateway_id is None
        else t.settings.c.gateway_id == gateway_id
    )
    return conn.execute(
        select(t.settings)
        .where(t.settings.c.tenant_id == tenant_id, gateway)
        .order_by(t.settings.c.version.desc())
        .limit(1)
    ).first()


def put_settings(
    conn: Connection,
    tenant_id: int,
    gateway_id: int | None,
    values: dict[str, Any],
    *,
    actor: str,
    user_id: int | None = None,
    replace: bool = False,
) -> Row:
    """A new version of the tenant default (gateway_id None) or of one gateway's override:
    merged into the previous one unless `replace`."""
    if MANAGED_KEYS & values.keys():
        raise SettingsError(
            f"{', '.join(sorted(MANAGED_KEYS & values.keys()))} is managed through the meters API"
        )
    check_values(values)
    previous = _latest(conn, tenant_id, gateway_id)
    merged = values if replace or previous is None else merge(previous.values, values)
    (version,) = conn.execute(
        select(func.coalesce(func.max(t.settings.c.version), 0) + 1).where(
            t.settings.c.tenant_id == tenant_id
        )
    ).one()
    conn.execute(
        insert(t.settings).values(
            tenant_id=tenant_id,
            gateway_id=gateway_id,
            version=version,
            values=merged,
            created_by=user_id,
            created_at=utcnow(),
        )
    )
    target = f"gateway:{gateway_id}" if gateway_id else "tenant_default"
    audit(
        conn,
        actor,
        "settings.update",
        target=target,
        tenant_id=tenant_id,
        detail={"version": version, "changed": values},
    )
    return _latest(conn, tenant_id, gateway_id)


def effective_versions(conn: Connection) -> dict[int, int]:
    """Every claimed gateway's effective settings version (what `effective_settings` would
    give it) in one query: the pushers look at what changed without building every
    gateway's settings at every round."""
    rows = conn.execute(
        select(t.gateways.c.id, func.max(t.settings.c.version))
        .join(
            t.settings,
            (t.settings.c.tenant_id == t.gateways.c.tenant_id)
            & (t.settings.c.gateway_id.is_(None) | (t.settings.c.gateway_id == t.gateways.c.id)),
        )
        .group_by(t.gateways.c.id)
    ).all()
    return dict(rows)


def effective_settings(
    conn: Connection, gateway: Row, box: CredentialBox, *, now_s: int
) -> Settings | None:
    """What `k/<gw>/g` should carry now (None for an unclaimed gateway)."""
    if gateway.tenant_id is None:
        return None
    default = _latest(conn, gateway.tenant_id, None)
    override = _latest(conn, gateway.tenant_id, gateway.id)
    values = merge(DEFAULTS, default.values if default else {})
    values = merge(values, override.values if override else {})
    meters = meters_of_gateway(conn, gateway.id)
    if meters:
        values["meter"] = meter_link_settings(meters[0], box)  # one meter per gateway
    version = max((row.version for row in (default, override) if row is not None), default=0)
    return Settings(version, now_s, values)


def for_wire(conn: Connection, gateway: Row, settings: Settings) -> Settings:
    """The settings as retained on `k/<gw>/g`: the meter's B-route credentials only as
    `meter["sealed"]`, sealed to the gateway's seal key for this serial and version. A
    gateway that enrolled without a key (an older agent) gets them withheld, and an
    event says why: a clear copy would sit in the broker's persistence."""
    meter = settings.values.get("meter") or {}
    secrets = {key: meter[key] for key in SEALED_KEYS if key in meter}
    if not secrets:
        return settings
    meter = {key: value for key, value in meter.items() if key not in SEALED_KEYS}
    if gateway.seal_public_key is None:
        record_event(
            conn,
            tenant_id=gateway.tenant_id,
            gateway_id=gateway.id,
            code="broute_credentials_withheld",
            severity="error",
            detail={"action": "update the gateway's agent: it sent no seal key at enrollment"},
        )
    else:
        meter["sealed"] = seal(
            gateway.seal_public_key, secrets, serial=gateway.serial, version=settings.version
        )
    return Settings(settings.version, settings.issued_s, {**settings.values, "meter": meter})


def history(conn: Connection, tenant_id: int, gateway_id: int | None) -> list[Row]:
    gateway = (
        t.settings.c.gateway_id.is_(None)
        if gateway_id is None
        else t.settings.c.gateway_id == gateway_id
    )
    return list(
        conn.execute(
            select(t.settings)
            .where(t.settings.c.tenant_id == tenant_id, gateway)
            .order_by(t.settings.c.version.desc())
        )
    )
