"""What docs/brokers.md says of RabbitMQ 3.10's and NATS 2.9's MQTT in a cluster, checked:
subscription queue types, where retained messages live, `$share` filters, and what the
HTTP auth backend is told (the client id)."""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from kenshin.ports import free_tcp_port
from kenshin.testing.clusters import NatsCluster, RabbitCluster

from .test_clusters import Client

pytestmark = pytest.mark.slow  # a RabbitMQ cluster boots in about 20 s on 2 cores


class AuthServer:
    """rabbitmq_auth_backend_http's counterpart: allows everything, keeps every POST body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                requests.append((self.path, {k: v[0] for k, v in parse_qs(body).items()}))
                self.send_response(200)
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"allow")

            def log_message(self, *_args) -> None:
                pass

        self.port = free_tcp_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def config(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        return (
            "auth_backends.1 = http\nauth_http.http_method = post\n"
            + "".join(f"auth_http.{p}_path = {url}/{p}\n" for p in ("user", "vhost", "resource"))
            + f"auth_http.topic_path = {url}/topic\n"
        )

    def bodies(self, path: str) -> list[dict[str, str]]:
        return [body for p, body in self.requests if p == f"/{path}"]


def _retained_per_node(cluster, topic: str, auth=None) -> list[bool]:
    """Whether a new subscriber on each node gets the retained message of `topic`."""
    found = []
    for i, port in enumerate(cluster.mqtt_ports):
        probe = Client(port, f"probe-{i}", auth=auth)
        probe.subscribe(topic)
        try:
            probe.messages.get(timeout=3)
            found.append(True)
        except queue.Empty:
            found.append(False)
        probe.close()
    return found


def _share_receives(cluster, auth=None) -> int:
    ingest = Client(cluster.mqtt_ports[0], "ingest-a", auth=auth)
    ingest.subscribe("$share/ingest/k/+/d")  # granted...
    publisher = Client(cluster.mqtt_ports[1], "gw-9", auth=auth)
    for k in range(5):
        publisher.publish("k/gw-9/d", b"%d" % k)
    publisher.close()
    got = 0
    with pytest.raises(queue.Empty):
        while True:
            ingest.messages.get(timeout=2)
            got += 1
    ingest.close()
    return got  # ...and nothing arrives


def test_rabbitmq_quorum_subscriptions_local_retained_and_the_client_id_for_http_auth(tmp_path):
    auth_server = AuthServer()
    plugins = ("rabbitmq_mqtt", "rabbitmq_auth_backend_http")
    config = auth_server.config() + "mqtt.durable_queue_type = quorum\n"
    with RabbitCluster(tmp_path / "rabbit", plugins=plugins, config_extra=config) as cluster:
        auth = ("gw-1", "secret")
        session = Client(cluster.mqtt_ports[1], "gw-1", clean=False, auth=auth)
        session.subscribe("k/gw-1/c")
        queues = json.loads(
            cluster.rabbitmqctl(0, "list_queues", "name", "type", "members", "--formatter", "json")
        )
        [subscription] = [q for q in queues if q["name"] == "mqtt-subscription-gw-1qos1"]
        assert subscription["type"] == "quorum"
        assert len(subscription["members"]) == 3

        publisher = Client(cluster.mqtt_ports[2], "gw-1-settings", auth=auth)
        info = publisher.client.publish("k/gw-1/g", b"settings", qos=1, retain=True)
        info.wait_for_publish(30)
        publisher.close()
        assert _retained_per_node(cluster, "k/gw-1/g", auth) == [False, False, True]
        assert _share_receives(cluster, auth) == 0
        session.close()

    [user] = [b for b in auth_server.bodies("user") if b["username"] == "gw-1"][:1]
    assert user["client_id"] == "gw-1" and user["password"] == "secret"
    assert any(b.get("client_id") == "gw-1" for b in auth_server.bodies("vhost"))
    topic = [b for b in auth_server.bodies("topic") if b["routing_key"] == "k.gw-1.c"]
    assert topic and topic[0]["variable_map.client_id"] == "gw-1"


def test_nats_retained_is_cluster_wide_and_share_is_not_supported(tmp_path):
    with NatsCluster(tmp_path / "nats") as cluster:
        publisher = Client(cluster.mqtt_ports[2], "gw-1-settings")
        info = publisher.client.publish("k/gw-1/g", b"settings", qos=1, retain=True)
        info.wait_for_publish(30)
        publisher.close()
        assert _retained_per_node(cluster, "k/gw-1/g") == [True, True, True]
        assert _share_receives(cluster) == 0
