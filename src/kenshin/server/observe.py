"""Every HTTP request: its id, its access log line and its latency.

- **Request id.** A client's (or proxy's) ``X-Request-ID`` is taken when it is sensible
  (1 to 128 letters, digits and ``._:-``), else one is made; it is sent back in the
  answer's ``X-Request-ID`` and is on every log line of the request (`logs.request_id`),
  and on the audit entries it makes.
- **Access log.** One line a request on the ``kenshin.access`` logger, once the answer's
  last byte went out (setting `access_log`): client, method, path (never the query, which
  may carry what should not be logged), route template, status, duration. Health checks
  and scrapes log at debug level.
- **Latency.** `metrics.HTTP_LATENCY` by route template (``/api/v1/meters/{meter_id}``,
  never the raw path, which would make a series per meter), method and status.

A pure ASGI middleware: it adds nothing to a streamed answer's memory or latency.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logs
from .metrics import HTTP_LATENCY

__all__ = ["REQUEST_ID_HEADER", "RequestMiddleware", "route_template"]

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER = REQUEST_ID_HEADER.lower().encode()
_SENSIBLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Any token is a method to HTTP: the others share one label, as unmatched paths do.
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_QUIET = {"/livez", "/readyz", "/metrics"}  # at debug level: probes every few seconds
access_log = logging.getLogger("kenshin.access")


def route_template(scope: Scope) -> str:
    """The matched route's path template, e.g. ``/api/v1/gateways/{gateway_id}``; mounts by
    their prefix; nothing matched: one label for all (a scanner's random paths must not each
    become a series).

    FastAPI before 0.1xx flattened included routers, so the route knew its whole template;
    later releases keep them nested and the route knows only its part below the routers'
    prefixes. Those prefixes are plain segments here (``/api/v1``): the template is the
    request path's leading segments that the route's own template does not cover, then it.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str) and template.startswith("/") and ":path}" not in template:
        own = template.strip("/").split("/")
        path = scope.get("path", "").strip("/").split("/")
        prefix = path[: max(0, len(path) - len(own))]
        return ("/" + "/".join(prefix) if prefix else "") + template
    root = scope.get("root_path", "")
    if root and scope.get("app") is not None:  # a Mount (the static files) sets its prefix
        return root + "/…"
    return "<unmatched>"


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                text = value.decode("latin-1")
                rid = text if _SENSIBLE.match(text) else None
                break
        rid = rid or uuid.uuid4().hex
        client = scope.get("client")
        address = client[0] if client else None
        rid_token = logs.request_id.set(rid)
        client_token = logs.client_address.set(address)
        began = time.perf_counter()
        status = 500  # unless the answer says otherwise (an exception escapes: a 500)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((_HEADER, rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - began
            route = route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            HTTP_LATENCY.labels(method, route, str(status)).observe(seconds)
            if self.access_log:
                self._log(scope, route, status, seconds, address)
            logs.request_id.reset(rid_token)
            logs.client_address.reset(client_token)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, seconds: float, client: Any) -> None:
        path = scope.get("path", "")
        level = logging.DEBUG if path in _QUIET and status < 500 else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        ms = round(seconds * 1000, 1)
        access_log.log(
            level,
            '%s "%s %s" %d %.1f ms',
            client or "-", scope["method"], path, status, ms,
            extra={"client": client, "method": scope["method"], "path": path,
                   "route": route, "status": status, "duration_ms": ms},
        )  # fmt: skip
