"""A real Redis Cluster for tests: N masters of valkey-server on free ports, no replicas.

Reusable on its own::

    with ValkeyCluster(tmp_dir, masters=3) as cluster:
        RedisCluster.from_url(cluster.url)  # any node's URL; the client finds the rest

Slots are split evenly with CLUSTER ADDSLOTSRANGE, the nodes are introduced
with CLUSTER MEET, and ``start()`` returns once every node reports
``cluster_state:ok`` and knows every other node. Each node's cluster bus
listens on a free port of its own (``cluster-port``), not on port + 10000.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from redis import Redis

from tests.support.servers import ValkeyProcess, free_port

SLOTS = 16384


class ValkeyCluster:
    def __init__(self, data_dir: Path, masters: int = 3, *, node_timeout_ms: int = 2000) -> None:
        self.bus_ports = [free_port() for _ in range(masters)]
        self.nodes = [
            ValkeyProcess(
                data_dir / f"node{index}",
                extra=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(self.bus_ports[index]),
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                ),
            )
            for index in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes and form the cluster; on failure call ``stop()`` (``with`` does)."""
        for node in self.nodes:
            node.start()
        clients = [Redis(host="127.0.0.1", port=node.port) for node in self.nodes]
        try:
            share = SLOTS // len(self.nodes)
            for index, client in enumerate(clients):
                first = index * share
                last = SLOTS - 1 if index == len(self.nodes) - 1 else first + share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus_port)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if all(self._settled(client) for client in clients):
                    return
                time.sleep(0.1)
            raise TimeoutError(f"cluster did not reach cluster_state:ok in {timeout}s")
        finally:
            for client in clients:
                client.close()

    def _settled(self, client: Redis) -> bool:
        info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
        return (
            fields.get("cluster_state") == "ok"
            and fields.get("cluster_known_nodes") == str(len(self.nodes))
            and fields.get("cluster_slots_ok") == str(SLOTS)
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ValkeyCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
