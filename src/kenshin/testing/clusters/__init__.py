"""Three-node MQTT broker clusters on this one machine, for tests and benches.

:class:`RabbitCluster` (RabbitMQ 3.10 with its MQTT plugin) and :class:`NatsCluster`
(nats-server 2.9 with JetStream and its MQTT listener). Everything lives under ``base_dir``:
data, logs, configuration, and for RabbitMQ a private Erlang cookie; every port is a free one
on 127.0.0.1 and every node name is unique, so a cluster never meets the machine's own
RabbitMQ (``rabbit@localhost``, 5672) or NATS (4222), nor another cluster of a parallel test.
epmd (4369) is shared, which is fine: it only maps distinct node names to ports.

    with RabbitCluster(tmp_path) as cluster:
        host, port = "127.0.0.1", cluster.mqtt_ports[0]
        cluster.kill_node(2)      # SIGKILL to the node's whole process group
        cluster.start_node(2)     # restarted on its own data dir: it is a member again

`base.py` holds what both share (nodes in process groups of their own, waiting, RSS);
`rabbitmq.py` and `nats.py` each cluster, with what was learnt running them here.
"""

from .base import ClusterError, raise_open_files_limit, rss_kib
from .nats import NatsCluster
from .rabbitmq import RabbitCluster

__all__ = ["ClusterError", "NatsCluster", "RabbitCluster", "raise_open_files_limit", "rss_kib"]
