"""Where the repository's private keys live, and who holds them.

Each role's key is an Ed25519 private key in PEM (PKCS#8), ``<role>.pem``, in one of three
directories: the *offline* one (root and targets: the operator keeps it off the server,
on a removable disk), the *online* one (snapshot and timestamp: the server signs with them
unattended) and the *recipes* one (the recipe authors'). A command is given only the
directories it needs; a key it lacks is an error that says which directory to bring.
Files are written 0600 and never overwritten: a retired key is moved aside, to be
destroyed by the operator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner

__all__ = ["HOLDER", "KeyDirs", "KeyMissing", "generate", "load_signer", "retire"]

# Which directory holds each role's key.
HOLDER = {
    "root": "offline",
    "targets": "offline",
    "snapshot": "online",
    "timestamp": "online",
    "recipes": "recipes",
}
_OPTION = {"offline": "--offline-keys", "online": "--online-keys", "recipes": "--recipe-keys"}


class KeyMissing(Exception):
    """A private key the operation needs is not at hand; the message says where to find it."""


@dataclass(frozen=True)
class KeyDirs:
    offline: Path | None = None
    online: Path | None = None
    recipes: Path | None = None

    def dir_for(self, role: str) -> Path | None:
        return getattr(self, HOLDER[role])

    def file_for(self, role: str) -> Path:
        directory = self.dir_for(role)
        if directory is None:
            holder = HOLDER[role]
            raise KeyMissing(
                f"signing {role} needs the {holder} key directory: pass "
                f"{_OPTION[holder]} DIR (the one `kenshin release init` wrote {role}.pem to)"
            )
        return directory / f"{role}.pem"


def generate(keys: KeyDirs, role: str) -> CryptoSigner:
    """A new key for `role`, written to its directory (never over an existing file)."""
    signer = CryptoSigner.generate_ed25519()
    path = keys.file_for(role)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(signer.private_bytes)
    return signer


def load_signer(keys: KeyDirs, role: str, keyids: list[str]) -> CryptoSigner:
    """The signer of `role` from its key file, which must be one of `keyids` (the keys the
    trusted metadata names for the role)."""
    path = keys.file_for(role)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise KeyMissing(
            f"no {role} key at {path}: pass the {HOLDER[role]} key directory that holds "
            f"{role}.pem ({_OPTION[HOLDER[role]]})"
        ) from None
    signer = CryptoSigner(load_pem_private_key(pem, None))
    if signer.public_key.keyid not in keyids:
        raise KeyMissing(
            f"{path} is not a current {role} key (key id {signer.public_key.keyid[:12]}, the "
            f"repository trusts {', '.join(k[:12] for k in keyids)}): a retired or another "
            "repository's key"
        )
    return signer


def retire(keys: KeyDirs, role: str, keyid: str) -> Path | None:
    """Move `role`'s key file aside (`<role>.<keyid>.retired.pem`), if it is there."""
    path = keys.file_for(role)
    if not path.exists():
        return None
    aside = path.with_name(f"{role}.{keyid[:16]}.retired.pem")
    path.rename(aside)
    return aside
