"""The broker keeps invariant 3: no device can speak for, or listen as, another device.

Every behaviour test runs with real MQTT clients over TCP on 127.0.0.1 against both brokers:
the embedded amqtt one and a Mosquitto child process started from the generated files.
"Never receives" is shown with a marker: after the forbidden messages, an allowed one is sent
on the same path; once it has arrived, anything sent before it would have arrived too.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path

import aiomqtt
import pytest

from kenshin.ports import free_tcp_port
from kenshin.server.broker import (
    Account,
    MosquittoListener,
    MosquittoProcess,
    Principal,
    PrincipalKind,
    StaticCredentials,
    hash_password,
    may_publish,
    may_receive,
    may_subscribe,
    verify_password,
    write_mosquitto_config,
)
from kenshin.server.broker.access import is_password_hash
from kenshin.server.broker.embedded import EmbeddedBroker
from kenshin.server.broker.mosquitto import find_mosquitto
from kenshin.server.broker.mosquitto_config import render_acl_file, render_password_file
from tests.support import run

HOST = "127.0.0.1"
PASSWORDS = {"gw1": "pw-gw1", "gw2": "pw-gw2", "ingest": "pw-ingest"}
KINDS = {"gw1": "device", "gw2": "device", "ingest": "service"}
# gw2 uses a different work factor: Mosquitto must read the iterations from the hash.
ACCOUNTS = [
    Account(name, hash_password(pw, iterations=1000 if name == "gw2" else 101), KINDS[name])
    for name, pw in PASSWORDS.items()
]
GW1 = Principal("gw1", PrincipalKind.DEVICE)
INGEST = Principal("ingest", PrincipalKind.SERVICE)


def _mosquitto_or_skip() -> str:
    try:
        return find_mosquitto()
    except FileNotFoundError:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is needed under CI")
        pytest.skip("mosquitto is not installed")


def _run_as() -> str | None:
    # Started as root, Mosquitto drops to the 'mosquitto' user, which cannot read a tmp dir.
    return getpass.getuser() if os.geteuid() == 0 else None


@contextlib.asynccontextmanager
async def broker(kind: str, tmp_path: Path, accounts: Iterable[Account] = ACCOUNTS):
    """Yield the port of a running broker of ``kind`` admitting ``accounts``."""
    accounts = list(accounts)
    if kind == "embedded":
        async with EmbeddedBroker(StaticCredentials(accounts)) as embedded:
            yield embedded.port
        return
    _mosquitto_or_skip()
    port = free_tcp_port()
    files = write_mosquitto_config(
        tmp_path / "mosquitto", accounts, [MosquittoListener(port)], user=_run_as()
    )
    async with MosquittoProcess(files.directory, port) as process:
        yield process.port


def client(port: int, username: str | None, **kwargs) -> aiomqtt.Client:
    password = PASSWORDS.get(username) if username else None
    kwargs.setdefault("password", password)
    return aiomqtt.Client(HOST, port, username=username, timeout=5, **kwargs)


async def collect_until(
    c: aiomqtt.Client, marker_topic: str, timeout_s: float = 3.0
) -> list[aiomqtt.Message]:
    """Messages up to and including the first on ``marker_topic``, plus a short grace."""
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout_s):
        async for message in c.messages:
            got.append(message)
            if message.topic.value == marker_topic:
                break
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.1):
            async for message in c.messages:
                got.append(message)
    return got


def refused(granted) -> bool:
    code = granted[0]
    return getattr(code, "value", code) >= 0x80


BROKERS = pytest.mark.parametrize("kind", ["embedded", "mosquitto"])


# --------------------------------------------------------------------------- over TCP


@BROKERS
def test_device_reading_reaches_the_service_at_qos_1(kind, tmp_path):
    async def main():
        async with broker(kind, tmp_path) as port, client(port, "ingest") as svc:
            await svc.subscribe("k/+/d", qos=1)
            async with client(port, "gw1") as gw1:
                await gw1.publish("k/gw1/d", b"\xa1reading", qos=1)
            [message] = await collect_until(svc, "k/gw1/d")
            assert message.payload == b"\xa1reading"
            assert message.qos == 1

    run(main())


@BROKERS
def test_device_cannot_publish_for_another_device(kind, tmp_path):
    forbidden = ["k/gw2/d", "k/gw2/s", "k/gw2/r", "k/gw1/c", "k/gw1/g", "k/gw1/x", "x/gw1/d"]

    async def main():
        async with broker(kind, tmp_path) as port, client(port, "ingest") as svc:
            await svc.subscribe("k/#", qos=1)
            await svc.subscribe("x/#", qos=1)
            async with client(port, "gw1") as gw1:
                for topic in forbidden:
                    await gw1.publish(topic, b"forged", qos=1, retain=topic == "k/gw1/g")
                await gw1.publish("k/gw1/d", b"marker", qos=1)
            got = await collect_until(svc, "k/gw1/d")
            assert [(m.topic.value, m.payload) for m in got] == [("k/gw1/d", b"marker")]

    run(main())


@BROKERS
def test_device_cannot_subscribe_beyond_its_own_topics(kind, tmp_path):
    filters = ["k/gw2/c", "k/+/c", "k/#", "#", "+/gw2/c", "k/gw1/+", "$share/x/k/+/c"]

    async def main():
        async with broker(kind, tmp_path) as port, client(port, "ingest") as svc:
            # gw2 holds live subscriptions to its own topics, with a retained setting there.
            async with client(port, "gw2") as gw2, client(port, "gw1") as gw1:
                await gw2.subscribe("k/gw2/c", qos=1)
                await gw2.subscribe("k/gw2/g", qos=1)
                await svc.publish("k/gw2/g", b"gw2 settings", qos=1, retain=True)
                await gw1.subscribe("k/gw1/c", qos=1)
                for topic_filter in filters:
                    granted = await gw1.subscribe(topic_filter, qos=1)
                    if kind == "embedded":  # Mosquitto 2.0 grants 3.1.1 SUBACKs, filters later
                        assert refused(granted), topic_filter
                for topic in ("k/gw2/c", "k/gw2/g", "k/gw2/d", "k/ingest/c"):
                    await svc.publish(topic, b"not for gw1", qos=1)
                await svc.publish("k/gw1/c", b"marker", qos=1)
                got = await collect_until(gw1, "k/gw1/c")
                assert {m.topic.value for m in got} == {"k/gw1/c"}
                assert {m.payload for m in got} == {b"marker"}
                # gw2 still gets its own (positive control).
                got2 = await collect_until(gw2, "k/gw2/c")
                assert {m.topic.value for m in got2} == {"k/gw2/g", "k/gw2/c"}
            # A device connecting later does not get another device's retained settings.
            async with client(port, "gw1") as gw1:
                await gw1.subscribe("k/gw1/c", qos=1)
                await svc.publish("k/gw1/c", b"marker 2", qos=1)
                got = await collect_until(gw1, "k/gw1/c")
                assert [m.payload for m in got] == [b"marker 2"]

    run(main())


@BROKERS
def test_device_receives_its_own_retained_settings(kind, tmp_path):
    async def main():
        async with broker(kind, tmp_path) as port:
            async with client(port, "ingest") as svc:
                await svc.publish("k/gw1/g", b"settings v1", qos=1, retain=True)
            async with client(port, "gw1") as gw1:
                await gw1.subscribe("k/gw1/g", qos=1)
                [message] = await collect_until(gw1, "k/gw1/g")
                assert message.payload == b"settings v1"
                assert message.retain

    run(main())


@BROKERS
def test_wrong_password_unknown_user_and_anonymous_are_refused(kind, tmp_path):
    async def main():
        async with broker(kind, tmp_path) as port:
            attempts = [
                {"username": "gw1", "password": "pw-gw2"},
                {"username": "gw1", "password": ""},
                {"username": "gw9", "password": "pw-gw1"},
                {"username": "gw1", "password": None},
                {"username": None, "password": None},
            ]
            for attempt in attempts:
                with pytest.raises(aiomqtt.MqttError):
                    async with client(port, **attempt):
                        pass
            async with client(port, "gw1"):  # the right one still works
                pass

    run(main())


def _connect_with_will(client_id: str, username: str, will_topic: str) -> bytes:
    """An MQTT 3.1.1 CONNECT with a QoS 1 Will, for a client that then drops the socket."""

    def field(data: bytes) -> bytes:
        return struct.pack("!H", len(data)) + data

    flags = 0x80 | 0x40 | 0x08 | 0x04 | 0x02  # user, password, will QoS 1, will, clean
    body = field(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30)
    for part in (client_id, will_topic, "gone", username, PASSWORDS[username]):
        body += field(part.encode())
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


@BROKERS
def test_will_on_another_device_topic_is_never_sent(kind, tmp_path):
    async def main():
        async with broker(kind, tmp_path) as port, client(port, "ingest") as svc:
            await svc.subscribe("k/#", qos=1)
            for will_topic in ("k/gw2/s", "k/gw1/s"):  # the second is allowed: the marker
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(_connect_with_will("gw1-will", "gw1", will_topic))
                await writer.drain()
                assert await reader.readexactly(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
                writer.transport.abort()  # no DISCONNECT: the Will is due
            got = await collect_until(svc, "k/gw1/s")
            assert [(m.topic.value, m.payload) for m in got] == [("k/gw1/s", b"gone")]

    run(main())


@BROKERS
def test_device_cannot_take_over_another_device_session(kind, tmp_path):
    async def main():
        async with broker(kind, tmp_path) as port, client(port, "ingest") as svc:
            async with client(port, "gw2", identifier="meter-2", clean_session=False) as gw2:
                await gw2.subscribe("k/gw2/c", qos=1)
            await svc.publish("k/gw2/c", b"queued for gw2", qos=1)  # gw2 is offline
            try:
                async with client(port, "gw1", identifier="meter-2", clean_session=False) as gw1:
                    await gw1.subscribe("k/gw1/c", qos=1)
                    await svc.publish("k/gw1/c", b"marker", qos=1)
                    got = await collect_until(gw1, "k/gw1/c")
                    assert [m.payload for m in got] == [b"marker"]
            except aiomqtt.MqttError:
                assert kind == "embedded"  # amqtt refuses another username on the session

    run(main())


def test_mosquitto_shares_a_shared_subscription_between_two_ingests(tmp_path):
    async def main():
        async with (
            broker("mosquitto", tmp_path) as port,
            client(port, "ingest", identifier="ingest-a") as a,
            client(port, "ingest", identifier="ingest-b") as b,
        ):
            for c in (a, b):
                assert not refused(await c.subscribe("$share/ingest/k/+/d", qos=1))
            async with client(port, "gw1") as gw1:
                for i in range(20):
                    await gw1.publish("k/gw1/d", str(i).encode(), qos=1)

            async def drain(c: aiomqtt.Client, into: list[bytes]) -> None:
                async for message in c.messages:
                    assert message.topic.value == "k/gw1/d"
                    into.append(message.payload)

            got_a: list[bytes] = []
            got_b: list[bytes] = []
            tasks = [asyncio.create_task(drain(a, got_a)), asyncio.create_task(drain(b, got_b))]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 3
            while len(got_a) + len(got_b) < 20 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # nothing more may come
            for task in tasks:
                task.cancel()
            assert sorted(got_a + got_b, key=int) == [str(i).encode() for i in range(20)]
            assert got_a and got_b  # each ingest got a share

    run(main())


def test_embedded_refuses_shared_subscriptions_it_cannot_serve(tmp_path):
    async def main():
        async with broker("embedded", tmp_path) as port, client(port, "ingest") as svc:
            assert refused(await svc.subscribe("$share/ingest/k/+/d", qos=1))
            assert not refused(await svc.subscribe("k/+/d", qos=1))

    run(main())


def test_mosquitto_reload_admits_a_new_device(tmp_path):
    _mosquitto_or_skip()
    port = free_tcp_port()
    directory = tmp_path / "mosquitto"
    listeners = [MosquittoListener(port)]
    write_mosquitto_config(directory, ACCOUNTS, listeners, user=_run_as())
    gw3 = Account("gw3", hash_password("pw-gw3"), "device")

    async def connects() -> bool:
        try:
            async with aiomqtt.Client(HOST, port, username="gw3", password="pw-gw3", timeout=5):
                return True
        except aiomqtt.MqttError:
            return False

    async def main():
        async with MosquittoProcess(directory, port) as process:
            assert not await connects()
            write_mosquitto_config(directory, [*ACCOUNTS, gw3], listeners, user=_run_as())
            process.reload()
            async with asyncio.timeout(5):
                while not await connects():
                    await asyncio.sleep(0.05)

    run(main())


def test_mosquitto_device_listener_ties_client_id_to_username(tmp_path):
    """With use_username_as_clientid, gw1 claiming gw2's client id does not drop gw2."""
    _mosquitto_or_skip()
    service_port, device_port = free_tcp_port(), free_tcp_port()
    listeners = [
        MosquittoListener(service_port),
        MosquittoListener(device_port, username_as_client_id=True),
    ]
    files = write_mosquitto_config(tmp_path / "m", ACCOUNTS, listeners, user=_run_as())

    async def main():
        async with (
            MosquittoProcess(files.directory, service_port),
            client(service_port, "ingest") as svc,
            client(device_port, "gw2", identifier="meter") as gw2,
        ):
            await gw2.subscribe("k/gw2/c", qos=1)
            async with client(device_port, "gw1", identifier="meter"):
                await svc.publish("k/gw2/c", b"still here", qos=1)
                [message] = await collect_until(gw2, "k/gw2/c")
                assert message.payload == b"still here"

    run(main())


# --------------------------------------------------------------------------- files


def test_password_hash_is_the_mosquitto_passwd_format(tmp_path):
    binary = _mosquitto_or_skip()
    passwd_tool = Path(binary).with_name("mosquitto_passwd")
    if not passwd_tool.exists():
        passwd_tool = Path("/usr/bin/mosquitto_passwd")
    path = tmp_path / "passwd"
    path.touch()
    subprocess.run([str(passwd_tool), "-b", str(path), "gw1", "s3cret"], check=True)
    username, encoded = path.read_text().strip().split(":", 1)
    assert username == "gw1" and encoded.startswith("$7$101$")
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    ours = hash_password("s3cret", salt=bytes(12))
    assert ours.split("$")[:4] == ["", "7", "101", "AAAAAAAAAAAAAAAA"]
    assert len(ours) == len(encoded)


def test_generated_files(tmp_path):
    files = write_mosquitto_config(tmp_path / "m", ACCOUNTS, [MosquittoListener(18883)])
    config = files.config.read_text()
    for line in (
        "allow_anonymous false",
        f"password_file {files.password_file}",
        f"acl_file {files.acl_file}",
        "persistence true",
        f"persistence_location {files.persistence_dir}",
        "listener 18883 127.0.0.1",
    ):
        assert line + "\n" in config
    acl = files.acl_file.read_text()
    for line in ("pattern write k/%u/d", "pattern read k/%u/c", "pattern read k/%u/g"):
        assert line + "\n" in acl
    assert "user ingest\ntopic readwrite k/#\n" in acl
    assert "user gw1" not in acl
    assert render_acl_file(ACCOUNTS) == acl
    lines = files.password_file.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["gw1", "gw2", "ingest"]
    assert render_password_file(ACCOUNTS).splitlines() == lines
    assert files.password_file.stat().st_mode & 0o777 == 0o640
    with pytest.raises(ValueError):
        render_password_file([*ACCOUNTS, ACCOUNTS[0]])


# --------------------------------------------------------------------------- rules


def test_device_publish_rules():
    assert all(may_publish(GW1, f"k/gw1/{ch}") for ch in "dser")
    forbidden = "k/gw1/c k/gw1/g k/gw2/d k/gw1 k/gw1/d/x k/+/d k/gw1/# $SYS/x K/gw1/d /k/gw1/d"
    for topic in [*forbidden.split(), "", "k/gw1/d\x00"]:
        assert not may_publish(GW1, topic), topic


def test_device_subscribe_rules():
    assert may_subscribe(GW1, "k/gw1/c") and may_subscribe(GW1, "k/gw1/g")
    assert may_receive(GW1, "k/gw1/c") and not may_receive(GW1, "k/gw2/c")
    forbidden = "k/gw2/c k/+/c k/# # +/gw1/c k/gw1/+ k/gw1/# k/gw1/d $share/g/k/gw1/c k/gw1/c/#"
    for topic_filter in [*forbidden.split(), ""]:
        assert not may_subscribe(GW1, topic_filter), topic_filter


def test_service_rules():
    for topic_filter in ("k/#", "k/+/d", "k/gw1/c", "$share/ingest/k/+/d", "$share/a-b/k/#"):
        assert may_subscribe(INGEST, topic_filter), topic_filter
    forbidden = "# +/gw1/d $SYS/# $share/ingest/# $share//k/+/d $share/ingest $share/in+/k/#"
    for topic_filter in [*forbidden.split(), "k/#/d", "k/gw+/d", "x/#", ""]:
        assert not may_subscribe(INGEST, topic_filter), topic_filter
    assert may_publish(INGEST, "k/gw1/c") and may_publish(INGEST, "k/gw1/g")
    assert not may_publish(INGEST, "k/+/c") and not may_publish(INGEST, "other/x")


def test_a_device_with_an_invalid_gateway_id_may_do_nothing():
    for name in ("", "a" * 33, "gw/1", "gw+", "gw#", "gw 1", "ｇｗ1"):
        device = Principal(name, PrincipalKind.DEVICE)
        assert not may_publish(device, f"k/{name}/d")
        assert not may_subscribe(device, f"k/{name}/c")
    with pytest.raises(ValueError):
        Account("gw/1", hash_password("x"), "device")
    with pytest.raises(ValueError):
        Account("gw1", "plaintext", "device")


def test_static_credentials():
    creds = StaticCredentials.from_passwords({"gw1": ("pw", "device"), "svc": ("s", "service")})

    async def main():
        assert await creds.authenticate("gw1", "pw") == GW1
        assert await creds.authenticate("svc", "s") == Principal("svc", PrincipalKind.SERVICE)
        assert await creds.authenticate("gw1", "PW") is None
        assert await creds.authenticate("nobody", "pw") is None

    run(main())
    assert all(is_password_hash(a.password_hash) for a in creds.accounts())
    assert not verify_password("pw", "$7$101$!!$AAAA")
    with pytest.raises(ValueError):
        creds.add(Account("gw1", hash_password("x"), "device"))
