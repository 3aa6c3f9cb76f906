"""A RabbitMQ 3.10 cluster with its MQTT plugin, on this one machine.

How a RabbitMQ node is run (3.10.8, Debian's package):

* ``/usr/lib/rabbitmq/bin/rabbitmq-server``, not ``/usr/sbin/rabbitmq-server``: as root the
  latter does ``su rabbitmq``, which resets ``HOME`` (so the machine's cookie would be used).
  The script stays in the foreground and execs ``erl`` in a child; it is started in a
  session of its own, so ``kill_node`` kills the script, ``beam.smp``, ``erl_child_setup``
  and ``inet_gethost`` at once (``os.killpg``).
* ``RABBITMQ_CONF_ENV_FILE`` points at a file of our own: the machine's
  ``/etc/rabbitmq/rabbitmq-env.conf`` sets ``NODENAME=rabbit@localhost``.
* The cookie: ``HOME`` is ``base_dir/home`` with ``.erlang.cookie`` (mode 0400), for the
  nodes and for every ``rabbitmqctl`` call. (3.10 also reads ``RABBITMQ_ERLANG_COOKIE``, but
  logs it as deprecated; ``HOME`` works for the server and the CLI alike.)
* The admin user is ``default_user``/``default_pass`` in ``rabbitmq.conf``: a fresh node
  creates it instead of ``guest``, so there is no ``guest`` at all and no CLI call is needed.
* Start: the nodes boot in parallel; then nodes 2..n each ``stop_app``, ``join_cluster``
  node 1, ``start_app``. A killed node restarted with :meth:`RabbitCluster.start_node`
  finds its membership in its own Mnesia directory and rejoins by itself. (Joining while
  booting, with peer discovery ``classic_config`` naming node 1, was tried: the nodes
  clustered, but the MQTT plugin's client-id Raft cluster waited about 100 s for a leader
  ("mqtt_node: leader call - leader not known") before the MQTT listeners opened.)

What the MQTT plugin of 3.10.8 does in a cluster, measured on these nodes (a subscriber
``clean_session=false`` at QoS 1 on node 2, a publisher on node 1; see docs/brokers.md):

* A QoS 1 subscription of a persistent session is a durable queue
  ``mqtt-subscription-<client id>qos1`` with ``x-expires`` = ``mqtt.subscription_ttl``
  (default 86,400,000 ms). By default it is a **classic** queue on the node the client was
  connected to when it subscribed: kill that node and the queue is ``down``; the client,
  reconnected to another node, gets nothing until the node is back (its messages were on
  disk: all 5 queued ones were there after the restart).
* ``mqtt.durable_queue_type = quorum`` **exists in 3.10** (schema: ``classic | quorum``) and
  works: the queue is a quorum queue with the three nodes as members; after the leader's
  node was killed a new leader was elected within seconds and the client, reconnected to
  node 3, received all 5 messages published while it was offline.
* Retained messages are **node-local**: ``mqtt.retained_message_store`` defaults to
  ``rabbit_mqtt_retained_msg_store_dets``, one store per vhost per node. A message retained
  through node 1 is delivered to new subscribers on node 1 only; node 2 and 3 have none.
* Client ids are tracked cluster-wide in a Ra (Raft) cluster of the plugin's own
  (``mqtt_node``/``mqtt_machine``): every CONNECT writes to it, so connecting needs a
  majority of the nodes (not measured separately; see the bench's connect rate).
* The HTTP auth backend (``rabbitmq_auth_backend_http``, ``auth_http.http_method = post``)
  receives the MQTT client id: ``user_path`` gets ``username, password, vhost, client_id``;
  ``vhost_path`` and ``resource_path`` get ``client_id`` too; ``topic_path`` gets
  ``variable_map.client_id`` (and ``variable_map.username``) with the routing key in AMQP
  form (``k.gw-1.c`` for the MQTT topic ``k/gw-1/c``) on exchange ``amq.topic``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from kenshin.ports import free_tcp_port

from .base import (
    HOST,
    RABBITMQ_BIN,
    RABBITMQ_PLUGINS_DIR,
    Cluster,
    ClusterError,
    Node,
    log_tail_of,
    port_open,
    raise_open_files_limit,
)


class RabbitCluster(Cluster):
    """RabbitMQ nodes ``kenshin-<tag>-r<i>@localhost`` clustered with node 1.

    ``config_extra``: lines appended to every node's ``rabbitmq.conf``; a key given there
    replaces the same key of the defaults below (``mqtt.allow_anonymous = false``,
    ``auth_backends.1 = http``, ``auth_http.user_path = ...``). A key 3.10 does not know
    fails the boot, and :class:`ClusterError` quotes cuttlefish's complaint: there is no
    ``mqtt.max_session_expiry_interval_seconds`` (no MQTT 5 in 3.10); the nearest is
    ``mqtt.subscription_ttl`` (ms, the ``x-expires`` of a session's queue).
    ``username``/``password``: the administrator (tags ``administrator``, all permissions on
    ``/``).
    """

    kind = "rabbitmq"
    server_process_name = "beam.smp"

    def __init__(
        self,
        base_dir: str | os.PathLike,
        nodes: int = 3,
        plugins: Iterable[str] = ("rabbitmq_mqtt", "rabbitmq_management"),
        config_extra: str = "",
        *,
        username: str = "kenshin",
        password: str = "kenshin-admin",
        start_timeout_s: float = 120,
    ) -> None:
        super().__init__(base_dir, nodes)
        self.plugins = tuple(plugins)
        self.config_extra = config_extra
        self.username, self.password = username, password
        self.start_timeout_s = start_timeout_s
        self.home = self.base_dir / "home"
        self.node_names = [f"kenshin-{self.tag}-r{i + 1}@localhost" for i in range(nodes)]
        self.amqp_ports = [free_tcp_port() for _ in range(nodes)]
        self.mqtt_ports = [free_tcp_port() for _ in range(nodes)]
        self.management_ports = [free_tcp_port() for _ in range(nodes)]
        self.dist_ports = [free_tcp_port() for _ in range(nodes)]
        self.nodes = [Node(i, self.base_dir / f"r{i + 1}") for i in range(nodes)]
        self._write_files()

    @property
    def management_urls(self) -> list[str]:
        return [f"http://{HOST}:{port}" for port in self.management_ports]

    # -- files ---------------------------------------------------------------------------

    def _config(self, i: int) -> str:
        settings = {
            "listeners.tcp.default": f"{HOST}:{self.amqp_ports[i]}",
            "mqtt.listeners.tcp.default": f"{HOST}:{self.mqtt_ports[i]}",
            "management.tcp.port": str(self.management_ports[i]),
            "management.tcp.ip": HOST,
            "default_user": self.username,
            "default_pass": self.password,
            "default_user_tags.administrator": "true",
            "default_permissions.configure": ".*",
            "default_permissions.read": ".*",
            "default_permissions.write": ".*",
            "mqtt.allow_anonymous": "false",
            "log.file.level": "info",
            "log.console": "false",
        }
        extra: list[str] = []
        for line in self.config_extra.splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                settings[key.strip()] = value.strip()
            elif line.strip():
                extra.append(line)
        body = "".join(f"{key} = {value}\n" for key, value in settings.items())
        return body + "".join(f"{line}\n" for line in extra)

    def _write_files(self) -> None:
        self.home.mkdir(exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        for i, node in enumerate(self.nodes):
            node.dir.mkdir(exist_ok=True)
            (node.dir / "rabbitmq.conf").write_text(self._config(i))
            (node.dir / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
            (node.dir / "advanced.config").write_text("[].\n")
            (node.dir / "rabbitmq-env.conf").write_text("")

    def _env(self, i: int) -> dict[str, str]:
        d = self.nodes[i].dir
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_"))
        }
        env.update(
            HOME=str(self.home),
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.node_names[i],
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(self.amqp_ports[i]),
            RABBITMQ_DIST_PORT=str(self.dist_ports[i]),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_PLUGINS_DIR=str(RABBITMQ_PLUGINS_DIR),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_PID_FILE=str(d / "rabbitmq.pid"),
            RABBITMQ_LOGS=str(d / "log" / "rabbit.log"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS=HOST,
        )
        return env

    def log_tail(self, i: int, lines: int = 40) -> str:
        """The node's console (a failed boot says why in its first lines: a configuration
        key 3.10 does not know, a port taken) and the tail of its log file."""
        try:
            console = self.nodes[i].log.read_text(errors="replace").splitlines()
        except OSError:
            console = []
        if len(console) > 30:
            console = [*console[:15], "...", *console[-10:]]
        log = self.nodes[i].dir / "log" / "rabbit.log"
        return "\n".join(console) + f"\n--- {log}:\n{log_tail_of(log, lines)}"

    # -- commands ------------------------------------------------------------------------

    def rabbitmqctl(self, i: int, *args: str, timeout_s: float = 120, check: bool = True) -> str:
        """``rabbitmqctl -n <node i> args...`` (0-based i); its output. Raises ClusterError
        with the node's log tail when it fails and ``check``."""
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", self.node_names[i], *args],
            env=self._env(i),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"rabbitmqctl -n {self.node_names[i]} {' '.join(args)}: exit "
                f"{result.returncode}\n{result.stdout}{result.stderr}\n{self.log_tail(i)}"
            )
        return result.stdout

    def _launch(self, i: int) -> None:
        node = self.nodes[i]
        (node.dir / "log").mkdir(exist_ok=True)
        node.spawn([str(RABBITMQ_BIN / "rabbitmq-server")], self._env(i))

    def _await(self, i: int, await_startup: bool = True) -> None:
        """Until node i's listeners accept (the plugins' listeners open last), then
        ``await_startup`` (one CLI call)."""
        node = self.nodes[i]
        ports = [self.amqp_ports[i], self.mqtt_ports[i]]
        if "rabbitmq_management" in self.plugins:
            ports.append(self.management_ports[i])
        self._wait_for(node, lambda: all(map(port_open, ports)), self.start_timeout_s, "listening")
        if await_startup:
            self.rabbitmqctl(i, "await_startup", "--timeout", "60")

    def _join(self, i: int) -> None:
        """``stop_app``, ``join_cluster`` node 1, ``start_app``: what the three CLI commands
        call, in one ``eval`` (each CLI call boots an Erlang VM: about a second here).
        Tried again when the CLI could not reach the node (exit 69): its listeners were
        open, but its distribution port was not yet there (seen once on a quiet machine)."""
        for attempt in range(4):
            try:
                self.rabbitmqctl(
                    i,
                    "eval",
                    f"ok = rabbit:stop(), "
                    f"ok = rabbit_mnesia:join_cluster('{self.node_names[0]}', disc), "
                    f"ok = rabbit:start().",
                )
                return
            except ClusterError as err:
                if ": exit 69" not in str(err).splitlines()[0] or attempt == 3:
                    raise
                time.sleep(2.0)

    def start(self) -> None:
        """All nodes booted in parallel, then nodes 2..n joined to node 1."""
        raise_open_files_limit()
        started = time.monotonic()
        try:
            for i in range(len(self.nodes)):
                self._launch(i)
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                # nodes 2..n are stopped and joined next: their listeners are enough
                first_only = [i == 0 for i in range(len(self.nodes))]
                list(pool.map(self._await, range(len(self.nodes)), first_only))
            self._say(f"booted in {time.monotonic() - started:.1f} s")
            # One join at a time: two nodes joining node 1 at once raced in Mnesia's
            # schema change, and one of them failed to boot (seen in a loaded full run).
            for i in range(1, len(self.nodes)):
                self._join(i)
            self._say(f"clustered in {time.monotonic() - started:.1f} s")
        except BaseException:
            self.stop()
            raise

    def _await_restarted(self, i: int) -> None:
        self._await(i)

    def running_nodes(self, i: int = 0) -> list[str]:
        """Node names that node i sees running in its cluster."""
        import json

        status = json.loads(self.rabbitmqctl(i, "cluster_status", "--formatter", "json"))
        return sorted(status["running_nodes"])
