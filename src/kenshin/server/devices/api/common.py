"""What the devices room's routers share: the role dependencies, the device key, the wake
of the pushers after a commit, and a tenant's gateway or a 404.

Separate so each resource's router (`enroll`, `gateways`, `sites`, `meters`, `homes`,
`settings`, `commands`) imports these from one place instead of from each other.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Request

from ...deps import Conn, Principal, RowId, require_platform_admin, require_role
from ...problems import Problem
from .. import registry

Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]
PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]
GatewayState = Literal["never_seen", "working", "lost_contact", "meter_link_down"]


def keys(request: Request) -> bytes:
    return request.app.state.device_key


def wake(request: Request) -> None:
    """Push settings and commands as soon as this request's transaction has committed."""
    service = getattr(request.app.state, "device_service", None)
    if service is not None:
        request.state.after_commit.append(service.wake)


def gateway_or_404(conn: Conn, gateway_id: RowId, tenant_id: RowId):
    row = registry.get_gateway(conn, gateway_id, tenant_id)
    if row is None:
        raise Problem(404, "no such gateway")
    return row
