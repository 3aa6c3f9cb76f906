"""The signature on every webhook request, and how a receiver checks it.

    X-Kenshin-Signature: t=1764000000,v1=<hex HMAC-SHA256(secret, "1764000000." + body)>

The timestamp is inside what is signed, so a captured request cannot be replayed later
than the receiver's tolerance (five minutes is usual); the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "WebhookSignatureError", "sign", "verify"]

SIGNATURE_HEADER = "X-Kenshin-Signature"


class WebhookSignatureError(ValueError):
    """The request is not signed with this secret, or is too old."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(
    secret: str, body: bytes, header: str, tolerance_s: int = 300, now: float | None = None
) -> int:
    """Check a request as a receiver would; returns its timestamp."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (ValueError, KeyError):
        raise WebhookSignatureError("malformed signature header") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise WebhookSignatureError("timestamp outside the tolerance: a replay?")
    if not hmac.compare_digest(given, _mac(secret, timestamp, body)):
        raise WebhookSignatureError("signature does not match")
    return timestamp
