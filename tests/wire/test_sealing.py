"""Sealed settings secrets: what is sealed to a gateway's key opens with that key, for that
serial and settings version, and nothing else opens — always with `SealError`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.wire.enrollment import b64decode, b64encode
from kenshin.wire.sealing import NotSealedToThisKey, SealError, SealKey, seal

serials = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
versions = st.integers(min_value=0, max_value=2**31)
secrets_maps = st.dictionaries(st.text(max_size=20), st.text(max_size=64), max_size=4)
KEY = SealKey()  # one key for the whole module: key generation is not what is tested
OTHER = SealKey()


@given(secrets=secrets_maps, serial=serials, version=versions)
def test_what_is_sealed_opens_with_the_key(secrets, serial, version):
    blob = seal(KEY.public_key, secrets, serial=serial, version=version)
    assert KEY.open(blob, serial=serial, version=version) == secrets


@given(serial=serials, version=versions)
def test_another_key_is_told_apart(serial, version):
    blob = seal(KEY.public_key, {"broute_password": "PW"}, serial=serial, version=version)
    with pytest.raises(NotSealedToThisKey):
        OTHER.open(blob, serial=serial, version=version)


@given(serial=serials, other=serials, version=versions, bump=st.integers(1, 5))
def test_another_serial_or_version_is_refused(serial, other, version, bump):
    blob = seal(KEY.public_key, {"broute_id": "ID"}, serial=serial, version=version)
    with pytest.raises(SealError):
        KEY.open(blob, serial=serial, version=version + bump)
    if other != serial:
        with pytest.raises(SealError):
            KEY.open(blob, serial=other, version=version)


@settings(max_examples=300)
@given(data=st.data())
def test_a_tampered_blob_is_refused(data):
    raw = bytearray(b64decode(seal(KEY.public_key, {"broute_id": "ID"}, serial="G", version=1)))
    where = data.draw(st.integers(0, len(raw) - 1))
    raw[where] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SealError):
        KEY.open(b64encode(bytes(raw)), serial="G", version=1)


@given(blob=st.one_of(st.text(max_size=200), st.binary(max_size=120).map(b64encode)))
def test_garbage_is_refused_with_seal_error_only(blob):
    with pytest.raises(SealError):
        KEY.open(blob, serial="G", version=1)


def test_a_forged_ephemeral_key_of_low_order_is_refused():
    raw = b64decode(seal(KEY.public_key, {"a": "b"}, serial="G", version=1))
    zero_point = raw[:9] + bytes(32) + raw[41:]
    with pytest.raises(SealError):
        KEY.open(b64encode(zero_point), serial="G", version=1)


def test_the_private_key_is_never_shown_and_keys_are_checked():
    assert "SealKey(id=" in repr(KEY) and len(KEY.public_key) == 32
    with pytest.raises(SealError):
        seal(b"short", {}, serial="G", version=1)
