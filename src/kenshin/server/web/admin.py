"""Administration in the panel: a tenant administrator's users, API keys, webhooks, alert
rules and notification channels and audit log, and the platform administrator's tenants.

Each page reads with the function its API route runs (same rows, same role), and every
change is made by the page's script through that API (static/forms.js), so validation,
the tenant wall and the audit log are the API's, written once. The tenant pages are for
the tenant's administrators only: no link for anyone else, and a 403 page on their URL.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response

from .. import listing
from ..alerts import api as alerts_api
from ..analytics.anomalies import RULES
from ..api import API_PREFIX, api_keys, audit, tenants, users
from ..api.models import Role, TenantKind
from ..deps import Conn
from ..webhooks import api as webhooks_api
from .rendering import AdminPage, PageRoute, PlatformAdminPage, render

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]
KINDS: tuple[str, ...] = TenantKind.__args__  # type: ignore[attr-defined]
SEVERITIES = ("info", "warning", "error", "critical")
AREAS = ("users", "api-keys", "webhooks", "alert-rules", "audit")
DELIVERIES_SHOWN = 10  # per webhook; the API has the rest
AUDIT_PAGE = 50
HOOK_KINDS = ("event", "slot.closed")


def _items(answer: listing.Page) -> list:
    """A list route's rows (every list answers a page, docs/api.md)."""
    return list(answer.items)


def _admin(page, template: str, area: str, **values: Any) -> Response:
    return render(page, template, area=area, areas=AREAS, api=API_PREFIX, **values)


@router.get("/admin")
def admin_home(page: AdminPage) -> Response:
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/users")
def users_page(page: AdminPage, conn: Conn) -> Response:
    rows = _items(users.list_users(conn, page.principal, page.tenant_id))
    return _admin(page, "admin_users.html", "users", users=rows, roles=ROLES)


@router.get("/admin/api-keys")
def keys_page(page: AdminPage, conn: Conn) -> Response:
    rows = _items(api_keys.list_api_keys(conn, page.principal, page.tenant_id))
    return _admin(page, "admin_keys.html", "api-keys", keys=rows, roles=ROLES)


@router.get("/admin/webhooks")
def webhooks_page(page: AdminPage, conn: Conn) -> Response:
    hooks = _items(webhooks_api.list_hooks(conn, page.principal, page.tenant_id))
    logs = {
        hook.id: _items(
            webhooks_api.deliveries(
                hook.id, conn, page.principal, page.tenant_id, None, DELIVERIES_SHOWN, None
            )
        )
        for hook in hooks
    }
    return _admin(page, "admin_webhooks.html", "webhooks", hooks=hooks, logs=logs, kinds=HOOK_KINDS)


@router.get("/admin/alert-rules")
def rules_page(page: AdminPage, conn: Conn) -> Response:
    rules = _items(alerts_api.list_rules(conn, page.principal, page.tenant_id))
    channels = _items(alerts_api.list_subscriptions(conn, page.principal, page.tenant_id))
    return _admin(
        page, "admin_rules.html", "alert-rules", rules=rules, channels=channels,
        severities=SEVERITIES, rule_names=list(RULES),
    )  # fmt: skip


@router.get("/admin/audit")
def audit_page(
    page: AdminPage,
    conn: Conn,
    action: Annotated[str | None, Query(max_length=64)] = None,
    cursor: listing.Cursor = None,
) -> Response:
    actions = [action] if action else None
    log = audit.list_audit(
        conn, page.principal, page.tenant_id, None, actions, None, None, "-at", AUDIT_PAGE, cursor
    )
    older = None
    if log.next_cursor:
        asked = {"action": action} if action else {}
        older = "/admin/audit?" + urlencode({**asked, "cursor": log.next_cursor})
    return _admin(page, "admin_audit.html", "audit", log=log, action=action or "", older=older)


@router.get("/platform/tenants")
def tenants_page(page: PlatformAdminPage, conn: Conn) -> Response:
    rows = _items(tenants.list_tenants(conn, page.principal))
    return render(page, "tenants.html", tenants=rows, kinds=KINDS, api=API_PREFIX)
