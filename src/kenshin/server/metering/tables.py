"""The metering room's tables: the readings, the 30-minute slots, the energy rollups, the
daily peaks, each meter's latest reading and the repair of lost half hours. The readings
and energy tables are partitioned by month on PostgreSQL (`metering/partitions.py`).

In the room, so the room's tables and its code change together; `schema.py` imports
them with every other room's onto the one metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
)

from ..schema_base import (
    Id,
    JSONDoc,
    UTCDateTime,
    _one_of,
    metadata,
    utcnow,
)

READING_SOURCES = ("measured", "refill")


readings_instant = Table(
    "readings_instant",
    metadata,
    # No foreign key to meters: its per-row check tripled the cost of every COPY (the
    # fleet's busiest write). The ingest writes only for a meter it has just looked up as
    # the sending gateway's, in the same transaction, and meters are never deleted.
    Column("meter_id", Id, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("power_w", Integer(), nullable=False),
    Column("current_r_da", Integer(), nullable=False),
    Column("current_t_da", Integer(), nullable=True),  # single-phase two-wire meters: none
    PrimaryKeyConstraint("meter_id", "at"),
)

readings_fixed = Table(
    "readings_fixed",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("slot_start", UTCDateTime(), nullable=False),
    Column("direction", SmallInteger(), nullable=False),  # 0 normal (bought), 1 reverse (sold)
    Column("raw", BigInteger(), nullable=False),  # the meter's cumulative counter, as read
    Column("source", String(16), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False, default=utcnow),
    PrimaryKeyConstraint("meter_id", "slot_start", "direction"),
    CheckConstraint("direction IN (0, 1)", name="direction"),
    _one_of("source", READING_SOURCES),
)

# Derived from readings_fixed by kenshin.server.metering.store: one row per meter, slot and
# direction; `missing` rows have no energy (never interpolated).
slot_energy = Table(
    "slot_energy",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("slot_start", UTCDateTime(), nullable=False),
    Column("direction", SmallInteger(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("milliwatt_hours", BigInteger(), nullable=True),
    Column("wh", BigInteger(), nullable=True),
    PrimaryKeyConstraint("meter_id", "slot_start", "direction"),
    CheckConstraint("direction IN (0, 1)", name="direction"),
    _one_of("status", ("measured", "refilled", "missing")),
)

# Rollups of slot_energy, kept current by the ingest with additive deltas (see
# kenshin.server.metering.rollups): `start` is the period's first instant (hours in UTC,
# which JST shares; days and months at JST midnight). `slots` counts the 30-minute values
# summed into `wh` (a complete JST day has 48 per meter), `refilled` those from history.
ENERGY_PERIODS = ("hour", "day", "month")
TENANT_ENERGY_PERIODS = ("slot", *ENERGY_PERIODS)

meter_energy = Table(
    "meter_energy",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("period", String(5), nullable=False),
    Column("direction", SmallInteger(), nullable=False),
    Column("start", UTCDateTime(), nullable=False),
    Column("wh", BigInteger(), nullable=False),
    Column("slots", Integer(), nullable=False),
    Column("refilled", Integer(), nullable=False),
    PrimaryKeyConstraint("meter_id", "period", "direction", "start"),
    CheckConstraint("direction IN (0, 1)", name="direction"),
    _one_of("period", ENERGY_PERIODS),
)

tenant_energy = Table(
    "tenant_energy",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("period", String(5), nullable=False),
    Column("direction", SmallInteger(), nullable=False),
    Column("start", UTCDateTime(), nullable=False),
    Column("wh", BigInteger(), nullable=False),
    Column("slots", Integer(), nullable=False),  # meter-slots summed
    Column("refilled", Integer(), nullable=False),
    PrimaryKeyConstraint("tenant_id", "period", "direction", "start"),
    CheckConstraint("direction IN (0, 1)", name="direction"),
    _one_of("period", TENANT_ENERGY_PERIODS),
)

# The day's (JST) highest bought power and highest sold power, with their instants, from
# instant readings; kept by the ingest with GREATEST-style upserts.
meter_daily_peak = Table(
    "meter_daily_peak",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("day", UTCDateTime(), nullable=False),  # JST midnight
    Column("import_w", Integer(), nullable=True),
    Column("import_at", UTCDateTime(), nullable=True),
    Column("export_w", Integer(), nullable=True),  # positive watts sold
    Column("export_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("meter_id", "day"),
)

# The newest instant reading of each meter: the list page's "current power" in one lookup.
meter_latest = Table(
    "meter_latest",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), primary_key=True, autoincrement=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("power_w", Integer(), nullable=False),
    Column("current_r_da", Integer(), nullable=False),
    Column("current_t_da", Integer(), nullable=True),
)


# The metering room's repair of lost half hours (metering/repair.py): per meter, the
# boundary up to which every value is here, and the backfill asked of its gateway.
meter_repair = Table(
    "meter_repair",
    metadata,
    Column("meter_id", Id, ForeignKey("meters.id"), primary_key=True, autoincrement=False),
    Column("complete_through", UTCDateTime(), nullable=True),
    Column("command_id", Id, nullable=True),  # the one backfill outstanding, if any
    Column("missing_from", UTCDateTime(), nullable=True),  # what it asked for
    Column("missing_to", UTCDateTime(), nullable=True),
    Column("attempts", Integer(), nullable=False, default=0, server_default="0"),
    Column("next_try_at", UTCDateTime(), nullable=True),
    Column("rescanned_at", UTCDateTime(), nullable=True),  # last look from the horizon on
)


# What recipes on the gateways measure (docs/updates.md, Recipes), a series of its own
# per gateway: e.g. "pv" from the PV recipe, values by name ({"generation_w": 2400, ...}).
# The gateway's QoS 1 may deliver a sample twice: one row per (gateway, series, at).
recipe_samples = Table(
    "recipe_samples",
    metadata,
    Column("tenant_id", Id, nullable=False),
    Column("gateway_id", Id, nullable=False),
    Column("series", String(32), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("recipe", String(128), nullable=False),
    Column("values", JSONDoc, nullable=False),
    PrimaryKeyConstraint("gateway_id", "series", "at"),
    ForeignKeyConstraint(["gateway_id", "tenant_id"], ["gateways.id", "gateways.tenant_id"]),
    Index(None, "tenant_id", "at"),
)
