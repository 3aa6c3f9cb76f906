"""Secrets: password hashes, API keys, session tokens, and credentials sealed at rest.

- Passwords: stdlib scrypt, a fresh 16-byte salt each, parameters kept in the stored
  string (``scrypt$n=32768,r=8,p=1$<salt>$<hash>``, base64) so they can be raised later
  without breaking old hashes; verified in constant time.
- API keys: ``ksk_`` and 43 URL-safe characters (256 random bits). The database keeps
  the hex SHA-256 and the 8 characters after ``ksk_`` (to tell keys apart in lists); the
  full key is shown once, when made. A fast hash is right here: the key is random, not a
  human's password, so there is nothing to brute-force.
- Session tokens: the same idea, for the web session cookie.
- `CredentialBox`: AES-256-GCM for B-route IDs and passwords, bound to associated data
  (the meter's id and the field) so a ciphertext copied to another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "API_KEY_PREFIX",
    "CredentialBox",
    "CredentialError",
    "NewApiKey",
    "SecretKey",
    "SecretKeyError",
    "dummy_password_hash",
    "generate_api_key",
    "generate_secret_key",
    "hash_password",
    "hash_token",
    "load_secret_key",
    "meter_credential_ad",
    "new_session_token",
    "password_needs_rehash",
    "verify_password",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- passwords

_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * r * n
    )


def hash_password(
    password: str, *, n: int | None = None, r: int | None = None, p: int | None = None
) -> str:
    """A salted scrypt hash of `password`, with its parameters, as one string."""
    n, r, p = n or _SCRYPT_N, r or _SCRYPT_R, p or _SCRYPT_P
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, _HASH_BYTES)
    return f"scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    scheme, params, salt, digest = stored.split("$")
    if scheme != "scrypt":
        raise ValueError(f"unknown password hash scheme {scheme!r}")
    fields = dict(item.split("=", 1) for item in params.split(","))
    return int(fields["n"]), int(fields["r"]), int(fields["p"]), _unb64(salt), _unb64(digest)


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored`; False (never an error) for a malformed hash."""
    try:
        n, r, p, salt, digest = _parse_hash(stored)
        candidate = _scrypt(password, salt, n, r, p, len(digest))
    except (ValueError, KeyError, binascii.Error):
        return False
    return hmac.compare_digest(candidate, digest)


def password_needs_rehash(stored: str) -> bool:
    """Whether `stored` was made with weaker parameters than today's."""
    try:
        n, r, p, _, _ = _parse_hash(stored)
    except (ValueError, KeyError, binascii.Error):
        return True
    return n < _SCRYPT_N or r < _SCRYPT_R or p < _SCRYPT_P


@functools.cache
def dummy_password_hash() -> str:
    """A hash to verify against when the email is unknown, so a login takes as long."""
    return hash_password(secrets.token_urlsafe(16))


# ---------------------------------------------------------------- API keys and tokens

API_KEY_PREFIX = "ksk_"


def hash_token(token: str) -> str:
    """Hex SHA-256 of an API key or session token: what the database keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    key: str  # shown to its owner once, never stored
    prefix: str  # the 8 characters after "ksk_"
    key_hash: str

    def __repr__(self) -> str:
        return f"NewApiKey(prefix={self.prefix!r})"


def generate_api_key() -> NewApiKey:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return NewApiKey(key=key, prefix=key[len(API_KEY_PREFIX) :][:8], key_hash=hash_token(key))


def new_session_token() -> tuple[str, str]:
    """(token for the cookie, its hash for the database)."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


# ---------------------------------------------------------------- credentials at rest


class CredentialError(Exception):
    """A sealed credential did not open: wrong key, tampered, or moved to another row."""


_NONCE_BYTES = 12


def meter_credential_ad(meter_id: int, field: str) -> bytes:
    """Associated data binding a B-route credential to its meter and column."""
    return f"kenshin:meter:{meter_id}:{field}".encode()


class CredentialBox:
    """AES-256-GCM: ``seal`` gives nonce (12 bytes) + ciphertext + tag; ``open`` reverses."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"credential key must be 32 bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "CredentialBox(<key hidden>)"

    def seal(self, plaintext: str, associated: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), associated)

    def open(self, sealed: bytes, associated: bytes) -> str:
        if len(sealed) < _NONCE_BYTES + 16:
            raise CredentialError("sealed credential too short")
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            plaintext = self._aead.decrypt(nonce, body, associated)
        except InvalidTag:
            raise CredentialError("sealed credential does not open with this key here") from None
        return plaintext.decode("utf-8")


# ---------------------------------------------------------------- the secret key


class SecretKeyError(ValueError):
    """The configured secret key is unusable."""


@dataclass(frozen=True)
class SecretKey:
    key: bytes
    source: str  # "KENSHIN_SECRET_KEY", or the file's path
    generated: bool  # made just now: tell the operator where

    def __repr__(self) -> str:
        return f"SecretKey(source={self.source!r}, generated={self.generated})"


def generate_secret_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise SecretKeyError(f"{where}: not base64") from None
    if len(key) != 32:
        raise SecretKeyError(f"{where}: must decode to 32 bytes, not {len(key)}")
    return key


def _create_key_file(key_file: Path) -> bool:
    """Make `key_file` with a fresh key unless it exists; True if this call made it.

    The key is written to a private temporary file first and hard-linked into place:
    the link fails if another process made the file meanwhile, and a process starting
    beside this one never reads a file that exists but is still empty.
    """
    if key_file.exists():
        return False
    try:
        fd, temporary = tempfile.mkstemp(dir=key_file.parent, prefix=f".{key_file.name}.")
    except OSError as err:
        raise SecretKeyError(f"cannot create secret key file {key_file}: {err}") from None
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp makes it mode 0600
            f.write(base64.b64encode(generate_secret_key()).decode("ascii") + "\n")
        os.link(temporary, key_file)
    except FileExistsError:
        return False
    except OSError as err:
        raise SecretKeyError(f"cannot create secret key file {key_file}: {err}") from None
    finally:
        os.unlink(temporary)
    return True


def load_secret_key(secret_key: str | None, key_file: Path) -> SecretKey:
    """The key from `secret_key` (base64) if given, else from `key_file`.

    A missing file is created with a fresh key, mode 0600, atomically (never overwriting
    a file another process made meanwhile). A file others can read gets a warning.
    """
    if secret_key:
        return SecretKey(_decode_key(secret_key, "KENSHIN_SECRET_KEY"), "KENSHIN_SECRET_KEY", False)
    generated = _create_key_file(key_file)
    if generated:
        log.warning(
            "generated a new secret key in %s: keep it with the database (without it the "
            "stored B-route credentials cannot be read) and out of anyone else's reach",
            key_file,
        )
    try:
        mode = key_file.stat().st_mode
    except OSError as err:
        raise SecretKeyError(f"{key_file}: {err}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key file %s is readable by others (mode %o)", key_file, mode & 0o777)
    try:
        text = key_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise SecretKeyError(f"{key_file}: {err}") from None
    key = _decode_key(text, str(key_file))
    return SecretKey(key, str(key_file), generated)
