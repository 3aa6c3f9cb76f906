"""A nats-server 2.9 cluster with JetStream and its MQTT listener, on this one machine.

NATS: the nodes route to each other (``cluster.routes``); a node counts as started once it is
healthy, routed to every other live node and a JetStream meta leader is known, and MQTT's
streams get ``stream_replicas: 3`` (else the first MQTT client creates them with as many
replicas as servers it knows of then, possibly 2, and a killed node can stall them).
"""

from __future__ import annotations

import os
import time

from kenshin.ports import free_tcp_port

from .base import HOST, NATS_SERVER, Cluster, Node, port_open, raise_open_files_limit


class NatsCluster(Cluster):
    """nats-server nodes with JetStream (a store each), routes between them, and an MQTT
    listener on each (NATS MQTT needs ``server_name`` and JetStream).

    ``config_extra``: text appended to every node's configuration (e.g. an ``accounts``
    block, or ``mqtt { ... }`` settings are better passed as ``mqtt_extra``).
    """

    kind = "nats"
    server_process_name = "nats-server"

    def __init__(
        self,
        base_dir: str | os.PathLike,
        nodes: int = 3,
        config_extra: str = "",
        mqtt_extra: str = "",
        *,
        start_timeout_s: float = 60,
    ) -> None:
        super().__init__(base_dir, nodes)
        self.config_extra, self.mqtt_extra = config_extra, mqtt_extra
        self.start_timeout_s = start_timeout_s
        self.client_ports = [free_tcp_port() for _ in range(nodes)]
        self.cluster_ports = [free_tcp_port() for _ in range(nodes)]
        self.monitor_ports = [free_tcp_port() for _ in range(nodes)]
        self.mqtt_ports = [free_tcp_port() for _ in range(nodes)]
        self.server_names = [f"kenshin-{self.tag}-n{i + 1}" for i in range(nodes)]
        self.nodes = [Node(i, self.base_dir / f"n{i + 1}") for i in range(nodes)]
        for i, node in enumerate(self.nodes):
            node.dir.mkdir(exist_ok=True)
            (node.dir / "nats.conf").write_text(self._config(i))

    @property
    def monitor_urls(self) -> list[str]:
        return [f"http://{HOST}:{port}" for port in self.monitor_ports]

    def _config(self, i: int) -> str:
        routes = ", ".join(
            f"nats-route://{HOST}:{port}" for j, port in enumerate(self.cluster_ports) if j != i
        )
        cluster = (
            f"cluster {{\n  name: kenshin-{self.tag}\n  listen: {HOST}:{self.cluster_ports[i]}\n"
            f"  routes: [{routes}]\n}}\n"
            if len(self.nodes) > 1
            else ""
        )
        store = self.nodes[i].dir / "jetstream"
        return (
            f"server_name: {self.server_names[i]}\n"
            f"listen: {HOST}:{self.client_ports[i]}\n"
            f"http: {HOST}:{self.monitor_ports[i]}\n"
            f"jetstream {{\n  store_dir: {str(store)!r}\n  max_memory_store: 1G\n"
            f"  max_file_store: 10G\n}}\n"
            f"{cluster}"
            f"mqtt {{\n  listen: {HOST}:{self.mqtt_ports[i]}\n"
            f"  stream_replicas: {min(3, len(self.nodes))}\n{self.mqtt_extra}\n}}\n"
            f"{self.config_extra}\n"
        )

    def _launch(self, i: int) -> None:
        node = self.nodes[i]
        node.spawn(
            [NATS_SERVER, "-c", str(node.dir / "nats.conf"), "-l", str(node.log)],
            {**os.environ},
        )

    def monitor(self, i: int, path: str) -> dict | None:
        """A monitoring endpoint's JSON (``varz``, ``routez``, ``jsz``...), None if it fails."""
        import json
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.monitor_urls[i]}/{path}", timeout=1) as answer:
                return json.load(answer)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _healthy(self, i: int, full: bool = True) -> bool:
        """Healthy, routed to every other live node, and a JetStream meta leader known
        (before that, the first MQTT client creates its streams with fewer replicas).

        ``full=False`` (a restarted node): only ``healthz?js-enabled-only=true``. 2.9.10's
        full health check of a node restarted after SIGKILL can fail for minutes on
        "JetStream consumer '$G > $MQTT_rmsgs > $MQTT_rmsgs_<id>' is not current" (the
        retained-message consumer of its former life) while it already serves MQTT."""
        health = "healthz" if full else "healthz?js-enabled-only=true"
        if (self.monitor(i, health) or {}).get("status") != "ok":
            return False
        others = sum(node.alive for node in self.nodes) - 1
        routes = {r.get("remote_id") for r in (self.monitor(i, "routez") or {}).get("routes", [])}
        if len(routes) < others:
            return False
        if len(self.nodes) == 1:
            return True  # JetStream without a cluster has no meta leader
        meta = (self.monitor(i, "jsz") or {}).get("meta_cluster") or {}
        return bool(meta.get("leader"))

    def _await(self, i: int, full: bool = True) -> None:
        self._wait_for(
            self.nodes[i],
            lambda: self._healthy(i, full) and port_open(self.mqtt_ports[i]),
            self.start_timeout_s,
            "healthy",
        )

    def start(self) -> None:
        raise_open_files_limit()
        started = time.monotonic()
        try:
            for i in range(len(self.nodes)):
                self._launch(i)
            for i in range(len(self.nodes)):
                self._await(i)
            self._say(f"healthy in {time.monotonic() - started:.1f} s")
        except BaseException:
            self.stop()
            raise

    def _await_restarted(self, i: int) -> None:
        self._await(i, full=False)  # JetStream enabled: see _healthy on a restarted node
