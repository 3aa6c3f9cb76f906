"""The dr room's tables: a tenant's DR events, each home's participation in one, the
opt-outs, and the imbalance rules that raise or propose events. In the room, so the
room's tables and its code change together; `schema.py` imports them onto the one
metadata.

An event's targets are whole W, one per 30-minute slot of the event (`targets_w`, JSON):
the tenant's reduction in that slot, which `service.py` splits over the homes; or, instead,
a shed level (1 to 3) that each home's gateway reads as how much of its policy to use.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

from ..schema_base import Id, JSONDoc, UTCDateTime, _created_at, _id, _one_of, metadata, utcnow

EVENT_STATES = ("proposed", "scheduled", "active", "ended", "final", "cancelled")
PARTICIPATION_STATES = (
    "pending", "sent", "acknowledged", "no_devices", "refused", "acting", "done", "failed",
    "opted_out",
)  # fmt: skip
OPT_OUT_VIA = ("link", "api", "gateway")

dr_rules = Table(
    "dr_rules",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("threshold_w", Integer(), nullable=False),  # projected imbalance over plan, W
    Column("slots", JSONDoc, nullable=False),  # slot numbers of the JST day, 0..47
    Column("target_w", Integer(), nullable=False),  # the event's reduction a slot
    Column("auto", Boolean(), nullable=False),  # raise the event (else propose it)
    Column("enabled", Boolean(), nullable=False, default=True, server_default=true()),
    Column("created_by", String(64), nullable=False),
    _created_at(),
    Index(None, "tenant_id"),
    CheckConstraint("threshold_w > 0", name="threshold_positive"),
    CheckConstraint("target_w > 0", name="target_positive"),
)

dr_events = Table(
    "dr_events",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("start_at", UTCDateTime(), nullable=False),  # a JST half hour's start
    Column("end_at", UTCDateTime(), nullable=False),  # exclusive, a half hour's start too
    Column("targets_w", JSONDoc, nullable=True),  # one W a slot; NULL: a shed level
    Column("shed_level", Integer(), nullable=True),
    Column("price_jpy_kwh", Float(), nullable=True),
    Column("opt_out_deadline", UTCDateTime(), nullable=False),
    Column("state", String(16), nullable=False, default="scheduled", server_default="scheduled"),
    Column("created_by", String(64), nullable=False),
    Column("openadr_event_id", String(64), nullable=True),  # the VTN event it came from
    Column("rule_id", Id, ForeignKey("dr_rules.id"), nullable=True),
    Column("results", JSONDoc, nullable=True),  # stored when final (service.results_doc)
    _created_at(),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("cancelled_at", UTCDateTime(), nullable=True),
    Column("final_at", UTCDateTime(), nullable=True),
    Index(None, "tenant_id", "start_at"),
    Index(None, "state"),
    _one_of("state", EVENT_STATES),
    CheckConstraint("end_at > start_at", name="end_after_start"),
    CheckConstraint("(targets_w IS NULL) <> (shed_level IS NULL)", name="targets_or_shed"),
    CheckConstraint("shed_level IS NULL OR shed_level BETWEEN 1 AND 3", name="shed_range"),
)

dr_participations = Table(
    "dr_participations",
    metadata,
    _id(),
    Column("event_id", Id, ForeignKey("dr_events.id"), nullable=False),
    Column("tenant_id", Id, nullable=False),
    Column("site_id", Id, nullable=False),  # the home
    Column("gateway_id", Id, nullable=False),  # the home's gateway that acts
    Column("state", String(16), nullable=False, default="pending", server_default="pending"),
    Column("opt_out_token", String(64), nullable=False, unique=True),  # the customer's link
    Column("targets_w", JSONDoc, nullable=True),  # this home's share, as sent
    Column("devices", JSONDoc, nullable=True),  # what the gateway said it will act on
    Column("reason", Text(), nullable=True),  # of a refusal or failure
    Column("report", JSONDoc, nullable=True),  # the gateway's report, as it came
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("cancel_sent_at", UTCDateTime(), nullable=True),  # a cancel (or opt-out) sent
    Column("state_at", UTCDateTime(), nullable=True),
    Column("reported_at", UTCDateTime(), nullable=True),
    UniqueConstraint("event_id", "site_id"),
    ForeignKeyConstraint(["site_id", "tenant_id"], ["sites.id", "sites.tenant_id"]),
    ForeignKeyConstraint(["gateway_id", "tenant_id"], ["gateways.id", "gateways.tenant_id"]),
    Index(None, "gateway_id", "event_id"),
    Index(None, "state"),
    _one_of("state", PARTICIPATION_STATES),
)

dr_opt_outs = Table(
    "dr_opt_outs",
    metadata,
    Column("participation_id", Id, ForeignKey("dr_participations.id"), primary_key=True),
    Column("event_id", Id, ForeignKey("dr_events.id"), nullable=False),
    Column("tenant_id", Id, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("via", String(16), nullable=False),
    Column("by", String(64), nullable=True),  # the actor (a user, an API key) if not the link
    Index(None, "event_id"),
    _one_of("via", OPT_OUT_VIA),
)
