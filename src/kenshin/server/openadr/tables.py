"""The openadr room's tables: the tenants' OpenADR clients (hashed secrets), their bearer
tokens (hashed, with an expiry) and the VTN's objects.

Every VTN object (program, event, report, subscription, VEN, resource) is one row of
`openadr_objects`: the spec's JSON as the client sent it (less what the VTN provisions:
id, times, objectType) in `body`, with the few fields the VTN filters and joins on copied
into columns. The objects are documents the spec defines down to the last field; the VTN
checks their shape at the door (`models.py`) and keeps them whole.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table, UniqueConstraint

from ..schema_base import Id, JSONDoc, UTCDateTime, _created_at, _id, _one_of, metadata, utcnow

CLIENT_ROLES = ("bl", "ven")
OBJECT_TYPES = ("PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE")

openadr_clients = Table(
    "openadr_clients",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("client_id", String(64), nullable=False, unique=True),  # public, random
    Column("secret_hash", String(64), nullable=False),  # hex SHA-256 of a random secret
    Column("role", String(8), nullable=False),
    Column("name", String(128), nullable=False),  # a VEN's venName / clientName
    Column("created_by", String(64), nullable=False),
    _created_at(),
    Column("revoked_at", UTCDateTime(), nullable=True),
    UniqueConstraint("tenant_id", "name"),
    _one_of("role", CLIENT_ROLES),
)

openadr_tokens = Table(
    "openadr_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("client", Id, ForeignKey("openadr_clients.id"), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "client", "expires_at"),
)

openadr_objects = Table(
    "openadr_objects",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("object_type", String(16), nullable=False),
    Column("program_id", Id, nullable=True),  # events, reports, subscriptions
    Column("parent_id", Id, nullable=True),  # a report's event, a resource's VEN
    Column("owner", Id, ForeignKey("openadr_clients.id"), nullable=True),  # who made it
    Column("name", String(128), nullable=True),  # programName, clientName, venName...
    Column("body", JSONDoc, nullable=False),
    _created_at(),
    Column("modified_at", UTCDateTime(), nullable=False, default=utcnow),
    Index(None, "tenant_id", "object_type", "id"),
    Index(None, "tenant_id", "program_id"),
    _one_of("object_type", OBJECT_TYPES),
)
