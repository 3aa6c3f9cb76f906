"""The three-node broker clusters of kenshin.testing.clusters: QoS 1 in through node 1 and
out through node 2; a node killed, the others serve; the node restarted, it is a member."""

from __future__ import annotations

import queue
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kenshin.testing.clusters import ClusterError, NatsCluster, RabbitCluster

pytestmark = pytest.mark.slow  # a RabbitMQ cluster boots in about 20 s on 2 cores


class Client:
    """A paho client that waits for what it asked: CONNACK, SUBACK, PUBACK."""

    def __init__(self, port: int, client_id: str, *, clean: bool = True, auth=None) -> None:
        self.messages: queue.Queue = queue.Queue()
        self.seen: set[bytes] = set()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(30), f"{client_id}: no CONNACK from port {port}"

    def _on_connect(self, _client, _userdata, _flags, reason, _properties) -> None:
        assert not reason.is_failure, reason
        self.connected.set()

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(30), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(30)
        assert info.is_published(), "no PUBACK"

    def receive(self, expected: bytes, timeout_s: float = 30) -> None:
        """Until `expected` arrives. QoS 1 is at least once: a message received before may
        come again (NATS redelivers one whose PUBACK the killed node had taken but not yet
        replicated); anything else is a failure."""
        deadline = time.monotonic() + timeout_s
        while True:
            payload = self.messages.get(timeout=max(0.1, deadline - time.monotonic())).payload
            if payload == expected:
                self.seen.add(payload)
                return
            assert payload in self.seen, f"unexpected {payload!r} while waiting for {expected!r}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _exercise(cluster, auth=None) -> None:
    ports = cluster.mqtt_ports
    subscriber = Client(ports[1], "gw-sub", clean=False, auth=auth)
    subscriber.subscribe("k/gw1/d")
    publisher = Client(ports[0], "gw-pub", auth=auth)
    publisher.publish("k/gw1/d", b"one")
    subscriber.receive(b"one")
    publisher.close()

    cluster.kill_node(0)  # the publisher's node
    assert not cluster.alive(0)
    started = time.monotonic()
    while True:  # the survivors may need a moment (a new Raft leader)
        try:
            publisher = Client(ports[2], "gw-pub", auth=auth)
            publisher.publish("k/gw1/d", b"two")
            break
        except (AssertionError, OSError):
            if time.monotonic() - started > 60:
                raise
            time.sleep(1)
    subscriber.receive(b"two")
    publisher.close()

    cluster.start_node(0)
    publisher = Client(ports[0], "gw-pub", auth=auth)
    publisher.publish("k/gw1/d", b"three")
    subscriber.receive(b"three")
    publisher.close()
    subscriber.close()


def test_rabbitmq_cluster(tmp_path) -> None:
    with RabbitCluster(tmp_path / "rabbit") as cluster:
        assert len(cluster.running_nodes()) == 3
        assert "guest" not in cluster.rabbitmqctl(0, "list_users")
        _exercise(cluster, auth=(cluster.username, cluster.password))
        assert cluster.running_nodes(1) == sorted(cluster.node_names)
    assert cluster.server_pids() == []


def test_nats_cluster(tmp_path) -> None:
    with NatsCluster(tmp_path / "nats") as cluster:
        _exercise(cluster)
        routes = cluster.monitor(0, "routez")["routes"]
        assert len({route["remote_id"] for route in routes}) == 2
    assert cluster.server_pids() == []


def test_one_node_nats_starts(tmp_path) -> None:
    """JetStream without a cluster has no meta leader: one node is healthy on its own."""
    with NatsCluster(tmp_path / "nats", nodes=1) as cluster:
        client = Client(cluster.mqtt_ports[0], "gw-solo", clean=False)
        client.subscribe("k/solo/c")
        client.publish("k/solo/c", b"solo")
        client.receive(b"solo")
        client.close()


def test_a_setting_rabbitmq_does_not_know_fails_with_its_name(tmp_path) -> None:
    cluster = RabbitCluster(
        tmp_path / "rabbit", nodes=1, config_extra="mqtt.max_session_expiry_interval = 60"
    )
    with pytest.raises(ClusterError, match=r"unknown variable: mqtt\.max_session_expiry"):
        cluster.start()
    assert cluster.server_pids() == []
