"""Enrollment over HTTP: no user signs in, the device proves itself with its key and
receives its MQTT credentials (`devices/enrollment.py` does the proving).

Separate from the tenant's resources: it is the one router of the room without a
principal, rate limited by serial, and the one that hands a credential to the broker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from kenshin.wire.enrollment import b64decode
from kenshin.wire.sealing import check_public_key

from ...deps import Conn
from ...problems import Problem
from ...ratelimits import RATE_LIMITED
from .. import enrollment
from .common import keys

log = logging.getLogger(__name__)
router = APIRouter(tags=["devices"])


class ChallengeRequest(BaseModel):
    serial: str = Field(max_length=64)


class EnrollRequest(BaseModel):
    serial: str = Field(max_length=64)
    challenge: str = Field(max_length=200)
    signature: str = Field(max_length=200)
    seal_key: str | None = Field(
        None, max_length=64, description="the agent's X25519 public key, base64 (32 bytes)"
    )

    @field_validator("seal_key")
    @classmethod
    def _raw_seal_key(cls, value: str | None) -> str | None:
        if value is not None:
            check_public_key(b64decode(value))  # ValueError (SealError): a 422
        return value


@router.post(
    "/enroll/challenge", summary="Step 1 of enrollment: a fresh challenge", responses=RATE_LIMITED
)
def enroll_challenge(body: ChallengeRequest, request: Request) -> dict[str, str]:
    request.app.state.rate_limits.enrollment(request, body.serial)
    return {"challenge": enrollment.new_challenge(keys(request), body.serial)}


@router.post(
    "/enroll",
    summary="Step 2: prove the identity, receive MQTT credentials",
    responses={202: {"description": "not claimed yet: ask again later"}, **RATE_LIMITED},
)
def enroll(body: EnrollRequest, request: Request, conn: Conn) -> Any:
    request.app.state.rate_limits.enrollment(request, body.serial)
    try:
        seal_key = None if body.seal_key is None else b64decode(body.seal_key)
        result = enrollment.enroll(
            conn, keys(request), body.serial, body.challenge, body.signature, seal_key
        )
    except enrollment.EnrollmentRefused as err:
        raise Problem(401, f"enrollment refused: {err}") from None
    if isinstance(result, enrollment.Unclaimed):
        return JSONResponse({"status": "unclaimed", "retry_after_s": result.retry_after_s}, 202)
    service = getattr(request.app.state, "device_service", None)
    endpoint = service.endpoint if service is not None else None
    conn.commit()  # the broker asks the database for this password: it must be there first
    if service is not None:
        try:
            service.credential_issued(result.username, result.password)
        except Exception as err:  # the broker did not take it: the gateway tries again
            log.warning("the broker did not take %s's credential: %s", result.username, err)
            raise Problem(
                503, "the broker is not reachable; try again", headers={"Retry-After": "30"}
            ) from None
        service.wake()
    # Where gateways reach the broker: the settings' public address, where it differs from
    # the one the ingest uses (a loopback listener beside a TLS one for the Internet).
    public = request.app.state.settings
    tls = public.mqtt_public_tls
    return {
        "status": "enrolled",
        "gateway_id": result.gateway_id,
        "mqtt": {
            "host": public.mqtt_public_host or (endpoint.host if endpoint else None),
            "port": public.mqtt_public_port or (endpoint.port if endpoint else 1883),
            "tls": tls if tls is not None else bool(endpoint and endpoint.tls),
            "username": result.username,
            "password": result.password,
            # a cluster's other nodes, tried in turn when one is unreachable
            "alternates": [
                {"host": a.host, "port": a.port} for a in getattr(service, "alternates", None) or []
            ],
            # the broker keeps no session for it: commands come again (runtime_push.py)
            "clean_session": public.clean_gateway_sessions,
            # admission control: when to connect first (devices/pacing.py)
            "connect_after_s": _connect_after_s(request),
        },
    }


def _connect_after_s(request: Request) -> float:
    pacer = getattr(request.app.state, "connection_pacer", None)
    return 0.0 if pacer is None else round(pacer.delay_s(time.monotonic()), 1)
