"""The server's side of enrollment (the exchange is in `kenshin.wire.enrollment`).

Challenges are stateless: `<expiry>.<random>.<mac>` signed with a server key, so any API
node can check one and nothing is stored. A valid signature of a fresh challenge by the
gateway's registered Ed25519 key earns a new random MQTT password (its scrypt hash is
stored; the old one stops working, so credentials rotate at every start). The agent's
seal key, covered by that signature, replaces the one stored: the settings are sealed
to the running agent's key alone (None for an older agent that sends none).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Row, select, update

from kenshin.wire.enrollment import CHALLENGE_TTL_S, b64decode, signed_message, valid_serial

from ..accounts import audit
from ..broker.access import hash_password
from ..events import record_event
from ..schema_base import utcnow
from . import tables as t
from .registry import gateway_by_serial

UNCLAIMED_RETRY_S = 60


class EnrollmentRefused(Exception):
    """Identity not proven (unknown serial, stale challenge, bad signature)."""


@dataclass(frozen=True)
class Issued:
    gateway_id: str
    username: str
    password: str


@dataclass(frozen=True)
class Unclaimed:
    retry_after_s: int = UNCLAIMED_RETRY_S


def _mac(key: bytes, serial: str, body: str) -> str:
    digest = hmac.new(key, f"challenge|{serial}|{body}".encode(), hashlib.sha256).digest()
    return digest.hex()[:32]


def new_challenge(key: bytes, serial: str, *, now: float | None = None) -> str:
    body = f"{int((now or time.time()) + CHALLENGE_TTL_S)}.{secrets.token_hex(12)}"
    return f"{body}.{_mac(key, serial, body)}"


def check_challenge(key: bytes, serial: str, challenge: str, *, now: float | None = None) -> None:
    try:
        expiry, nonce, mac = challenge.split(".")
        fresh = int(expiry) >= (now or time.time())
    except ValueError:
        raise EnrollmentRefused("malformed challenge") from None
    if not hmac.compare_digest(mac, _mac(key, serial, f"{expiry}.{nonce}")):
        raise EnrollmentRefused("challenge was not issued to this serial")
    if not fresh:
        raise EnrollmentRefused("challenge expired; ask for a new one")


def enroll(
    conn: Connection,
    key: bytes,
    serial: str,
    challenge: str,
    signature: str,
    seal_key: bytes | None = None,
) -> Issued | Unclaimed:
    if not valid_serial(serial):
        raise EnrollmentRefused("malformed serial")
    check_challenge(key, serial, challenge)
    gateway = gateway_by_serial(conn, serial)
    if gateway is None:
        raise EnrollmentRefused("unknown gateway")
    try:
        Ed25519PublicKey.from_public_bytes(gateway.public_key).verify(
            b64decode(signature), signed_message(serial, challenge, seal_key)
        )
    except (InvalidSignature, ValueError):
        raise EnrollmentRefused("the signature does not match this gateway's key") from None
    now = utcnow()
    if gateway.tenant_id is None:
        conn.execute(
            update(t.gateways).where(t.gateways.c.id == gateway.id).values(last_seen_at=now)
        )
        return Unclaimed()
    password = secrets.token_urlsafe(24)
    conn.execute(
        update(t.gateways)
        .where(t.gateways.c.id == gateway.id)
        .values(
            mqtt_username=serial,
            mqtt_password_hash=hash_password(password),
            seal_public_key=seal_key,
            last_seen_at=now,
        )
    )
    record_event(
        conn,
        tenant_id=gateway.tenant_id,
        gateway_id=gateway.id,
        code="gateway_enrolled",
        severity="info",
        detail={"serial": serial},
        at=now,
    )
    return Issued(serial, serial, password)


def password_hash(conn: Connection, username: str) -> str | None:
    """The hash of the broker password of the gateway logging in as `username` (None: no
    such gateway, or its credential was revoked), for the brokers' login checks."""
    g = t.gateways.c
    return conn.execute(select(g.mqtt_password_hash).where(g.mqtt_username == username)).scalar()


def revoke_credential(conn: Connection, gateway: Row, actor: str) -> str | None:
    """End a gateway's broker credential (suspected stolen, or the device retired); it must
    prove its identity again to get another. Returns the MQTT username it had, if any."""
    if gateway.mqtt_password_hash is None:
        return None
    conn.execute(
        update(t.gateways).where(t.gateways.c.id == gateway.id).values(mqtt_password_hash=None)
    )
    record_event(
        conn,
        tenant_id=gateway.tenant_id,
        gateway_id=gateway.id,
        code="gateway_credential_revoked",
        severity="warning",
        detail={"by": actor},
    )
    audit(conn, actor, "gateway.revoke_credential", target=f"gateway:{gateway.id}",
          tenant_id=gateway.tenant_id)  # fmt: skip
    return gateway.mqtt_username
