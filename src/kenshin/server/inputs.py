"""Text no field may hold: the NUL character.

PostgreSQL's text cannot store it (the insert failed: a 500), SQLite stores it and it
would then leave in CSVs and gateway settings. `RefuseNul`, a pure ASGI middleware,
refuses it wherever a request can carry text, with a 422 problem: a query string with
``%00``, a JSON body with ``\\u0000`` (an escape, not an escaped backslash followed by
"u0000"), a form with ``%00``, or a raw NUL byte in any body. It sees the body as it
arrives (bodies are capped by `bodylimit.BodyLimit`, which sits outside it), and refuses
at its end, before the application has parsed it.
"""

from __future__ import annotations

import re

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem_response

__all__ = ["RefuseNul"]

_DETAIL = "text may not contain the NUL character (U+0000)"
_QUERY_NUL = re.compile(rb"%00")
# \u0000 preceded by an even number of backslashes (none included): the escape itself.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


class NulInText(HTTPException):
    def __init__(self) -> None:
        super().__init__(422, _DETAIL)


def _has_nul(body: bytes, content_type: bytes) -> bool:
    if b"\x00" in body:
        return True
    if b"json" in content_type:
        return _JSON_NUL.search(body) is not None
    if b"x-www-form-urlencoded" in content_type:
        return _QUERY_NUL.search(body) is not None
    return False


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _QUERY_NUL.search(scope.get("query_string", b"")):
            await problem_response(422, _DETAIL)(scope, receive, send)
            return
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.lower()
        body = bytearray()

        async def watched() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False) and _has_nul(bytes(body), content_type):
                    raise NulInText
            return message

        await self.app(scope, watched, send)
