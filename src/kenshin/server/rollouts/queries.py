"""The rollouts room's reads: its HTTP lists (rollouts, a rollout's gateways, a page at a
time), one rollout with its counts, and the fleet's version distribution for the panel.

Separate from `service.py` (the writes) so the handlers only check, call and shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import Connection, Row, select

from .. import listing
from ..devices.queries import agent_versions, tenant_gateways
from . import tables as t
from .service import stage_counts

__all__ = ["gateway_page", "get_rollout", "rollout_page", "serials", "version_distribution"]


def rollout_page(
    conn: Connection, tenant_id: int, states: Sequence[str] | None, limit: int, cursor: str | None
) -> tuple[Sequence[Row], str | None]:
    """A page of the tenant's rollouts, newest first (of these states if given)."""
    return listing.tenant_page(conn, t.rollouts, tenant_id, states, "created_at", limit, cursor)


def get_rollout(conn: Connection, tenant_id: int, rollout_id: int) -> tuple[Row, dict] | None:
    """The tenant's rollout and its gateways counted by stage and state (None: not the
    tenant's)."""
    row = conn.execute(
        select(t.rollouts).where(t.rollouts.c.id == rollout_id, t.rollouts.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        return None
    return row, stage_counts(conn, rollout_id)


def gateway_page(
    conn: Connection,
    rollout_id: int,
    states: Sequence[str] | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Row], str | None]:
    """A page of a rollout's gateways, by gateway id (of these states if given)."""
    g = t.rollout_gateways.c
    query = select(t.rollout_gateways).where(g.rollout_id == rollout_id)
    if states:
        query = query.where(g.state.in_(states))
    query, page = listing.paginate(
        query, sortable={"gateway_id": g.gateway_id}, id_column=g.gateway_id, sort="gateway_id",
        limit=limit, cursor=cursor,
    )  # fmt: skip
    return page(conn.execute(query).all())


def serials(conn: Connection, tenant_id: int) -> dict[int, str]:
    """The tenant's gateways' serials by id, to name the gateways a page lists."""
    return {g.id: g.serial for g in tenant_gateways(conn, tenant_id)}


def version_distribution(conn: Connection, tenant_id: int) -> list[tuple[str | None, int]]:
    """How many of the tenant's gateways run each agent version (by their newest report;
    None: no report yet), the most common first."""
    versions = agent_versions(conn, tenant_id)
    counted: Counter[str | None] = Counter(versions.values())
    unknown = len(tenant_gateways(conn, tenant_id)) - len(versions)
    if unknown > 0:
        counted[None] = unknown
    return counted.most_common()
