"""Password hashes, API keys, the credential box and the secret key."""

from __future__ import annotations

import base64
import hashlib
import logging
import multiprocessing
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from kenshin.server import security
from kenshin.server.security import (
    CredentialBox,
    CredentialError,
    SecretKeyError,
    generate_api_key,
    generate_secret_key,
    hash_password,
    hash_token,
    load_secret_key,
    meter_credential_ad,
    password_needs_rehash,
    verify_password,
)


def test_password_hash_verifies_and_differs_per_salt() -> None:
    first, second = hash_password("pässwörd 1"), hash_password("pässwörd 1")
    assert first != second
    assert verify_password("pässwörd 1", first) and verify_password("pässwörd 1", second)
    assert not verify_password("pässwörd 2", first)
    assert not verify_password("", first)


def test_password_hash_carries_its_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real cost, not the tests' cheap one
    stored = security.hash_password("secret")
    assert stored.startswith("scrypt$n=32768,r=8,p=1$")
    assert security.verify_password("secret", stored)
    assert not security.password_needs_rehash(stored)
    weak = security.hash_password("secret", n=2**10)
    assert security.verify_password("secret", weak)
    assert security.password_needs_rehash(weak)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "bcrypt$x$y$z",
        "scrypt$n=3,r=8,p=1$AAAA$AAAA",
        "scrypt$n=1024$AAAA$AAAA",
        "scrypt$n=1024,r=8,p=1$!!$AAAA",
    ],
)
def test_a_malformed_hash_never_verifies(stored: str) -> None:
    assert not verify_password("anything", stored)
    assert password_needs_rehash(stored)


def test_api_keys_are_random_and_kept_as_hashes() -> None:
    new = generate_api_key()
    assert new.key.startswith("ksk_") and len(new.key) == 4 + 43
    assert new.prefix == new.key[4:12]
    assert new.key_hash == hashlib.sha256(new.key.encode()).hexdigest() == hash_token(new.key)
    assert new.key not in repr(new)
    assert generate_api_key().key != new.key


def test_credential_box_round_trip() -> None:
    box = CredentialBox(generate_secret_key())
    ad = meter_credential_ad(7, "broute_password")
    sealed = box.seal("0123456789AB", ad)
    assert b"0123456789AB" not in sealed
    assert box.open(sealed, ad) == "0123456789AB"
    assert box.seal("0123456789AB", ad) != sealed  # a fresh nonce every time


def test_credential_box_refuses_tampering() -> None:
    box = CredentialBox(generate_secret_key())
    ad = meter_credential_ad(7, "broute_id")
    sealed = box.seal("00112233445566778899AABBCCDDEEFF", ad)
    for i in (0, 12, len(sealed) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(CredentialError):
            box.open(bytes(tampered), ad)
    with pytest.raises(CredentialError):
        box.open(sealed[:20], ad)


def test_credential_box_binds_the_associated_data() -> None:
    box = CredentialBox(generate_secret_key())
    sealed = box.seal("secret", meter_credential_ad(7, "broute_password"))
    with pytest.raises(CredentialError):
        box.open(sealed, meter_credential_ad(8, "broute_password"))  # another meter's row
    with pytest.raises(CredentialError):
        box.open(sealed, meter_credential_ad(7, "broute_id"))  # another column


def test_credential_box_needs_its_own_key() -> None:
    sealed = CredentialBox(generate_secret_key()).seal("secret", b"ad")
    with pytest.raises(CredentialError):
        CredentialBox(generate_secret_key()).open(sealed, b"ad")
    with pytest.raises(ValueError, match="32 bytes"):
        CredentialBox(b"short")


def test_secret_key_file_is_made_once_private(tmp_path, caplog) -> None:
    path = tmp_path / "kenshin-secret.key"
    with caplog.at_level(logging.WARNING):
        first = load_secret_key(None, path)
    assert first.generated and first.source == str(path)
    assert str(path) in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_secret_key(None, path)
    assert not again.generated and again.key == first.key
    assert len(first.key) == 32


def _load_key_in_a_process(path: str) -> bytes:
    return load_secret_key(None, Path(path)).key


def test_processes_starting_together_share_one_complete_key(tmp_path) -> None:
    # Split roles start side by side: one makes the file, none reads it half-written.
    path = tmp_path / "kenshin-secret.key"
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("fork")) as pool:
        keys = list(pool.map(_load_key_in_a_process, [str(path)] * 32))
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_secret_key_from_the_environment_wins(tmp_path) -> None:
    key = generate_secret_key()
    loaded = load_secret_key(base64.b64encode(key).decode(), tmp_path / "unused.key")
    assert loaded.key == key and loaded.source == "KENSHIN_SECRET_KEY"
    assert not (tmp_path / "unused.key").exists()


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"16 bytes only...").decode()])
def test_a_bad_secret_key_is_a_clear_error(tmp_path, text: str) -> None:
    with pytest.raises(SecretKeyError):
        load_secret_key(text, tmp_path / "k")
    path = tmp_path / "k"
    path.write_text(text)
    with pytest.raises(SecretKeyError, match=str(path)):
        load_secret_key(None, path)


def test_a_readable_key_file_is_warned_about(tmp_path, caplog) -> None:
    path = tmp_path / "k"
    path.write_text(base64.b64encode(generate_secret_key()).decode())
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load_secret_key(None, path)
    assert "readable by others" in caplog.text
