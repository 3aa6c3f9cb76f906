"""Enrollment, the one exchange over HTTPS: a gateway proves who it is and gets its MQTT
credentials. No client certificates: each gateway is made with an Ed25519 key pair; the
server knows only the public key (imported from the factory's CSV) and the hash of the
claim code printed on the box.

1. `POST /api/v1/enroll/challenge {"serial"}` → `{"challenge"}`: a fresh, server-signed,
   short-lived value (the server keeps no state for it).
2. `POST /api/v1/enroll {"serial", "challenge", "signature", "seal_key"}` where
   `seal_key` is the agent's fresh X25519 public key (base64, 32 bytes; see
   `kenshin.wire.sealing`: the settings' B-route credentials are sealed to it) and
   signature is the device's Ed25519 signature of `signed_message(serial, challenge,
   seal_key)`, base64: the key is signed too, so no one who sees or relays a request
   can have the credentials sealed to a key of their own. An older agent sends no
   `seal_key` (and signs `signed_message(serial, challenge)`); it gets its settings
   without B-route credentials.
   → 200 `{"status": "enrolled", "gateway_id", "mqtt": {"host", "port", "tls", "username",
   "password"}}` with a new MQTT password each time (so credentials rotate at every start),
   or 202 `{"status": "unclaimed", "retry_after_s"}` while nobody has claimed the gateway,
   or 401 for an unknown serial, a stale challenge or a bad signature.

Both ends import this module, so the message signed is the same bytes on both sides.
"""

from __future__ import annotations

import base64
import re

ENROLL_VERSION = "kenshin-enroll-v1"
CHALLENGE_TTL_S = 120
SERIAL_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")  # also the gateway's MQTT id and topic


def signed_message(serial: str, challenge: str, seal_key: bytes | None = None) -> bytes:
    """What the device signs: bound to this protocol, this serial, this challenge and
    the seal key it sends, if any."""
    text = f"{ENROLL_VERSION}|{serial}|{challenge}"
    return (text if seal_key is None else f"{text}|seal:{b64encode(seal_key)}").encode("ascii")


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    """URL-safe base64 with or without padding; ValueError on anything else."""
    if not re.fullmatch(r"[A-Za-z0-9_=-]*", text):
        raise ValueError("not URL-safe base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def valid_serial(serial: str) -> bool:
    return bool(SERIAL_PATTERN.fullmatch(serial))
