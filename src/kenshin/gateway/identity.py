"""The one file a gateway keeps: who it is (serial, Ed25519 private key) and where its
cloud is. Everything else (MQTT credentials, meter settings, B-route credentials) comes
from the cloud at each start and lives in memory only, as does the key the B-route
credentials are sealed to (a new one at each enrollment: `kenshin.wire.sealing`).

The factory makes identities in bulk (`kenshin gateway make-identity`): one identity file
per box, and one CSV row per box for the server's import (serial, model, public key, claim
code). The claim code is printed on the box; the retailer types it to claim the gateway.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kenshin.wire.enrollment import b64decode, b64encode, signed_message, valid_serial

CLAIM_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a label


class IdentityError(ValueError):
    """The identity file is missing, unreadable or malformed (the message says which)."""


@dataclass(frozen=True)
class Identity:
    serial: str
    private_key: bytes  # Ed25519, 32 raw bytes
    server_url: str
    model: str = "kenshin-gw"
    # The update repository's root metadata the gateway first trusts (docs/updates.md):
    # installed with the identity, so trust in updates starts at the factory, not at the
    # first server the box talks to.
    update_root: dict | None = None

    def __repr__(self) -> str:
        return f"Identity(serial={self.serial!r}, server_url={self.server_url!r})"

    @property
    def public_key(self) -> bytes:
        key = Ed25519PrivateKey.from_private_bytes(self.private_key)
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign_challenge(self, challenge: str, seal_key: bytes | None = None) -> str:
        key = Ed25519PrivateKey.from_private_bytes(self.private_key)
        return b64encode(key.sign(signed_message(self.serial, challenge, seal_key)))

    @classmethod
    def generate(cls, serial: str, server_url: str, model: str = "kenshin-gw") -> Identity:
        if not valid_serial(serial):
            raise IdentityError(f"serial {serial!r}: use 1..32 of A-Z a-z 0-9 _ -")
        raw = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(serial, raw, server_url, model)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "serial": self.serial,
            "model": self.model,
            "server_url": self.server_url,
            "private_key": b64encode(self.private_key),
        }
        if self.update_root is not None:
            data["update_root"] = self.update_root
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the key is secret
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)

    @classmethod
    def load(cls, path: str | Path) -> Identity:
        try:
            data = json.loads(Path(path).read_text())
            identity = cls(
                data["serial"],
                b64decode(data["private_key"]),
                data["server_url"],
                data.get("model", "kenshin-gw"),
                data.get("update_root"),
            )
        except FileNotFoundError:
            raise IdentityError(
                f"no identity file at {path}: make one with `kenshin gateway make-identity`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise IdentityError(f"identity file {path} is unreadable: {err}") from None
        if len(identity.private_key) != 32 or not valid_serial(identity.serial):
            raise IdentityError(f"identity file {path} holds a bad key or serial")
        if identity.update_root is not None and not isinstance(identity.update_root, dict):
            raise IdentityError(f"identity file {path}: update_root is not a JSON object")
        return identity

    def write_update_root(self, path: Path) -> bool:
        """The update root this identity carries, written to `path` (the update client's
        initial root) unless a file is there already; whether it was written."""
        if self.update_root is None or path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(self.update_root))
        os.replace(partial, path)
        return True


def new_claim_code() -> str:
    """Ten characters from an unambiguous alphabet, grouped for a label: ABCDE-FGHJK."""
    code = "".join(secrets.choice(CLAIM_ALPHABET) for _ in range(10))
    return f"{code[:5]}-{code[5:]}"
