"""Secrets in a gateway's settings, sealed to a key only the running gateway holds.

The settings on `k/<gw>/g` are retained: the broker keeps them in memory and, for
Mosquitto, in its persistence file. So the meter's B-route ID and password travel there
only sealed. At each enrollment the agent makes a fresh X25519 key pair that never
leaves its memory and sends the public half (signed with its identity key, see
`kenshin.wire.enrollment`); the server seals the secrets to it, and a process that
restarts makes a new pair and gets them sealed again.

A sealed blob, URL-safe base64 without padding on the wire (`meter["sealed"]`):

    0x01 | key id (8) | ephemeral X25519 public key (32) | AES-256-GCM ciphertext + tag

- the key id is the first 8 bytes of SHA-256 of the recipient's public key: a gateway
  tells a blob sealed to an earlier key of its own (settings retained before it enrolled
  again; the re-sealed ones follow) from one that is broken;
- the AES key and nonce come from HKDF-SHA256 over the X25519 shared secret of a fresh
  ephemeral key and the recipient's, with both public keys in the info, so each seal has
  its own key and the nonce is never reused;
- the associated data binds the blob to the gateway's serial and the settings version: a
  blob copied to another gateway's or another version's settings does not open.

The plaintext is a JSON map of text values ({"broute_id", "broute_password"}). Both ends
import this module; opening fails only with `SealError` (its subclass `NotSealedToThisKey`
when the key id is another's), whatever the bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .enrollment import b64decode, b64encode

SEAL_VERSION = 1
KEY_LEN = 32
KEY_ID_LEN = 8
_HEADER_LEN = 1 + KEY_ID_LEN + KEY_LEN
_TAG_LEN = 16
_INFO = b"kenshin-seal-v1"


class SealError(ValueError):
    """A sealed blob that does not open: malformed, tampered with, or not for this
    gateway, this key or this settings version."""


class NotSealedToThisKey(SealError):
    """Sealed to another public key (an earlier enrollment's, most likely)."""


def key_id(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:KEY_ID_LEN]


def associated_data(serial: str, version: int) -> bytes:
    return f"{_INFO.decode()}|{serial}|{version}".encode()


def _key_and_nonce(shared: bytes, ephemeral: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 32 + 12, salt=None, info=_INFO + ephemeral + recipient).derive(
        shared
    )
    return okm[:32], okm[32:]


def check_public_key(public_key: bytes) -> bytes:
    """The key as given, or SealError if it is not a raw X25519 public key."""
    if not isinstance(public_key, bytes) or len(public_key) != KEY_LEN:
        raise SealError(f"a seal key is {KEY_LEN} raw bytes")
    return public_key


def seal(public_key: bytes, secrets: Mapping[str, str], *, serial: str, version: int) -> str:
    """`secrets` sealed to `public_key` for this gateway's settings `version`."""
    recipient = X25519PublicKey.from_public_bytes(check_public_key(public_key))
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    key, nonce = _key_and_nonce(ephemeral.exchange(recipient), ephemeral_public, public_key)
    plaintext = json.dumps(dict(secrets), separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, plaintext, associated_data(serial, version))
    return b64encode(bytes([SEAL_VERSION]) + key_id(public_key) + ephemeral_public + sealed)


@dataclass(frozen=True, repr=False)
class SealKey:
    """The gateway's half: a private key that lives in this object only."""

    _private: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)

    def __repr__(self) -> str:
        return f"SealKey(id={key_id(self.public_key).hex()})"

    @property
    def public_key(self) -> bytes:
        return self._private.public_key().public_bytes_raw()

    def open(self, blob: str, *, serial: str, version: int) -> dict[str, str]:
        """The secrets of a blob from `seal`, or SealError."""
        try:
            raw = b64decode(blob) if isinstance(blob, str) else b""
        except ValueError:
            raw = b""
        if len(raw) < _HEADER_LEN + _TAG_LEN or raw[0] != SEAL_VERSION:
            raise SealError("not a sealed blob of a known version")
        if raw[1 : 1 + KEY_ID_LEN] != key_id(self.public_key):
            raise NotSealedToThisKey("sealed to another key")
        ephemeral_public = raw[1 + KEY_ID_LEN : _HEADER_LEN]
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
            key, nonce = _key_and_nonce(shared, ephemeral_public, self.public_key)
            plaintext = AESGCM(key).decrypt(
                nonce, raw[_HEADER_LEN:], associated_data(serial, version)
            )
        except (InvalidTag, ValueError):  # ValueError: a low-order point (all-zero secret)
            raise SealError("does not open: tampered with, or not for this gateway") from None
        try:
            secrets = json.loads(plaintext)
        except ValueError:
            secrets = None
        if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
        ):
            raise SealError("opened, but not a map of text values")
        return secrets
