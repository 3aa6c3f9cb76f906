"""The rollouts room's tables: a rollout (a version, a cohort, stages, a threshold) and
each of its gateways' update state. In the room, so the room's tables and its code change
together; `schema.py` imports them with every other room's onto the one metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from ..schema_base import Id, JSONDoc, UTCDateTime, _created_at, _id, _one_of, metadata, utcnow

ROLLOUT_STATES = ("running", "paused", "halted", "aborted", "done")
UPDATE_STATES = ("pending", "downloading", "installed", "healthy", "failed", "rolled_back")

rollouts = Table(
    "rollouts",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("version", String(64), nullable=False),
    # {"gateway_ids": [..] | null, "percent": 1..100}: who may get the version at all.
    Column("cohort", JSONDoc, nullable=False),
    Column("stages", JSONDoc, nullable=False),  # cumulative percentages, rising to 100
    Column("stage", Integer(), nullable=False, default=0, server_default="0"),  # its index
    Column("stage_started_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("failure_threshold_pct", Integer(), nullable=False),
    Column("soak_s", Integer(), nullable=True),  # NULL: stages advance by hand only
    Column("window_s", Integer(), nullable=False),  # downloads spread over this many seconds
    Column("state", String(16), nullable=False, default="running", server_default="running"),
    Column("reason", Text(), nullable=True),  # why it halted, was paused or aborted
    Column("created_by", String(64), nullable=False),
    _created_at(),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
    Index(None, "tenant_id", "created_at"),
    Index(None, "state"),
    _one_of("state", ROLLOUT_STATES),
    CheckConstraint("failure_threshold_pct BETWEEN 0 AND 100", name="threshold_range"),
    CheckConstraint("window_s BETWEEN 0 AND 86400", name="window_range"),
)

rollout_gateways = Table(
    "rollout_gateways",
    metadata,
    Column("rollout_id", Id, ForeignKey("rollouts.id"), nullable=False),
    Column("gateway_id", Id, nullable=False),
    Column("tenant_id", Id, nullable=False),
    Column("stage", Integer(), nullable=False),  # the stage that takes this gateway in
    Column("state", String(16), nullable=False, default="pending", server_default="pending"),
    Column("delay_s", Integer(), nullable=False),  # its place in the download window
    Column("command_id", Id, nullable=True),  # the `update` command, once asked
    Column("asked_at", UTCDateTime(), nullable=True),
    Column("state_at", UTCDateTime(), nullable=True),  # when the state last changed
    Column("reason", Text(), nullable=True),
    Column("from_version", String(64), nullable=True),
    PrimaryKeyConstraint("rollout_id", "gateway_id"),
    ForeignKeyConstraint(["gateway_id", "tenant_id"], ["gateways.id", "gateways.tenant_id"]),
    Index(None, "gateway_id", "state"),
    Index(None, "rollout_id", "stage", "state"),
    _one_of("state", UPDATE_STATES),
)
