"""POST /auth/token: OAuth2 client credentials (RFC 6749, section 4.4) for a bearer token.

The client authenticates with HTTP Basic (``client_id:client_secret``, what OAuth2
libraries send by default) or with ``client_id`` and ``client_secret`` in the form body
(the spec's clientCredentialRequest; a JSON body is taken too). Errors are RFC 6749's
``{"error": ...}``: 400 for a malformed request, 401 ``invalid_client`` for an unknown
client or a wrong secret. Counted like logins (`ratelimits.py`: per client address, and
per client_id as an account): past the limit a 429 with Retry-After."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..deps import in_transaction
from ..problems import PROBLEM_JSON, ProblemDetail
from ..ratelimits import RATE_LIMITED, client_address
from .auth import TOKEN_TTL_S, issue_token

router = APIRouter(tags=["auth"])
MAX_FIELD = 4096


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str | None = None


class AuthError(BaseModel):
    error: str
    error_description: str | None = None


def _error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="openadr"'} if status == 401 else None
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _fields(raw: bytes, content_type: str) -> dict[str, str]:
    if "json" in content_type:
        data = json.loads(raw or b"{}")
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return {k: v for k, v in data.items() if isinstance(v, str)}
    parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    return {k: v[0] for k, v in parsed.items()}


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (unquote(user), unquote(password)) if sep else None


_FORM: dict[str, Any] = {
    "application/x-www-form-urlencoded": {
        "schema": {
            "type": "object",
            "required": ["grant_type"],
            "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "client_id": {"type": "string", "maxLength": MAX_FIELD},
                "client_secret": {"type": "string", "maxLength": MAX_FIELD},
                "scope": {"type": "string", "maxLength": MAX_FIELD},
            },
        }
    }
}


@router.post(
    "/auth/token",
    summary="trade client credentials for a bearer token",
    openapi_extra={"requestBody": {"required": True, "content": _FORM}},
    responses={
        200: {"model": TokenOut, "description": "A token"},
        400: {"model": AuthError, "description": "A malformed request"},
        401: {"model": AuthError, "description": "Unknown client or wrong secret"},
        422: {
            "model": ProblemDetail,
            "description": "Text with a NUL character (a problem)",
            "content": {PROBLEM_JSON: {}},
        },
        **RATE_LIMITED,
    },
)
async def token(request: Request) -> JSONResponse:
    try:
        fields = _fields(await request.body(), request.headers.get("content-type", ""))
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_request", "the body is not a form (or JSON object)")
    if fields.get("grant_type") != "client_credentials":
        return _error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    basic = _basic(request)
    client_id, secret = basic or (fields.get("client_id", ""), fields.get("client_secret", ""))
    if not client_id or not secret or len(client_id) > MAX_FIELD or len(secret) > MAX_FIELD:
        return _error(400, "invalid_request", "client_id and client_secret are needed")
    request.app.state.rate_limits.hit(
        ("login_limit_per_client", client_address(request)),
        ("login_limit", f"openadr:{client_id}"),
        what="token requests",
    )
    issued = await in_transaction(request, issue_token, client_id, secret)
    if issued is None:
        return _error(401, "invalid_client", "unknown client, or a wrong secret")
    body = TokenOut(access_token=issued[0], expires_in=TOKEN_TTL_S, scope=issued[1].role)
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})
