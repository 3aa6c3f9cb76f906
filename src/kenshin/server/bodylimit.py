"""A cap on request bodies, enforced before any work and while the body arrives.

`BodyLimit` is a pure ASGI middleware, outermost: a ``Content-Length`` past the route's
cap is answered 413 before the application sees the request (no authentication, no
database, nothing read); a body without one (chunked) is counted as its chunks arrive and
the request ends with 413 at the first byte past the cap, so a client that lies or
streams never makes the server hold more than the cap.

Why: FastAPI reads and parses a JSON body before it resolves the dependencies that
authenticate, so an anonymous 300 MB POST was read whole (900 MB of memory) before its
401.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from http import HTTPStatus

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import PROBLEM_JSON

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised from `receive` at the first byte past the cap; the problem handlers (or, if
    it escapes them, the middleware itself) answer it 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


def _problem(limit: int) -> tuple[dict, bytes]:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": HTTPStatus(413).phrase,  # as the problem handlers name it
            "status": 413,
            "detail": f"the request body is larger than {limit} bytes",
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, body


class BodyLimit:
    """At most `default` bytes of body per request; `larger` gives some routes their own
    cap: ``(method, path regex, bytes)``, the first match wins."""

    def __init__(
        self, app: ASGIApp, default: int, larger: Iterable[tuple[str, str, int]] = ()
    ) -> None:
        self.app = app
        self.default = default
        self.larger = [(method, re.compile(path), limit) for method, path, limit in larger]

    def limit_for(self, method: str, path: str) -> int:
        for wanted, pattern, limit in self.larger:
            if wanted == method and pattern.fullmatch(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:  # the application answered already: nothing else can be said
                raise
            await _refuse(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # malformed: the HTTP server refuses it; counted all the same
    return None


async def _refuse(send: Send, limit: int) -> None:
    start, body = _problem(limit)
    await send(start)
    await send({"type": "http.response.body", "body": body})
