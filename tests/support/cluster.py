"""A real Redis Cluster for tests: N masters of valkey-server on free ports, optionally a
replica per master, each replication link through a proxy that can lag.

Reusable on its own::

    with ValkeyCluster(tmp_dir, masters=3) as cluster:
        RedisCluster.from_url(cluster.url)  # any node's URL; the client finds the rest

    with ValkeyCluster(tmp_dir, masters=3, replicas=1, lag=0.05, appendonly=True) as c:
        c.primary_of(slot)  # the node that owns a slot now (failovers move it)

Slots are split evenly with CLUSTER ADDSLOTSRANGE, the nodes are introduced
with CLUSTER MEET, replicas attached with CLUSTER REPLICATE, and ``start()``
returns once every node reports ``cluster_state:ok``, knows every other node,
and every replica's link is up. Each node's cluster bus listens on a free port
of its own (``cluster-port``), not on port + 10000.

With ``lag`` every node announces the port of its own ``DelayProxy``
(``proxies.py``) to the cluster (``cluster-announce-port``): replicas reach their
primary through it, ``lag`` seconds behind, while clients are told the node's own
port (``cluster-announce-client-port``). ``node.proxy`` is that proxy: killed with
the node it models a host crash (``crash()``); ``restart()`` gives the node a new
one (on a new port, which the node announces and the cluster learns by gossip).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError

from tests.support.proxies import DelayProxy
from tests.support.servers import ValkeyProcess, free_port, parse_info

SLOTS = 16384


class ClusterNode(ValkeyProcess):
    """One node; ``proxy`` is the lagging proxy in front of it, when the cluster has one."""

    proxy: DelayProxy | None = None

    def node_id(self) -> str:
        with self.client() as client:
            return str(client.execute_command("CLUSTER", "MYID").decode())


class ValkeyCluster:
    def __init__(
        self,
        data_dir: Path,
        masters: int = 3,
        *,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
        lag: float | None = None,
        appendonly: bool = False,
        appendfsync: str = "everysec",
    ) -> None:
        count = masters * (1 + replicas)
        self.masters = masters
        self.lag = lag
        self.bus_ports = [free_port() for _ in range(count)]
        self.nodes: list[ClusterNode] = []
        for index in range(count):
            port = free_port()
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                str(self.bus_ports[index]),
                "--cluster-node-timeout",
                str(node_timeout_ms),
            ]
            node = ClusterNode(
                data_dir / f"node{index}",
                port,
                appendonly=appendonly,
                appendfsync=appendfsync,
                extra=extra,
            )
            self.nodes.append(node)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes and form the cluster; on failure call ``stop()`` (``with`` does)."""
        for index in range(len(self.nodes)):
            self._start_fresh(index)
        clients = [Redis(host="127.0.0.1", port=node.port) for node in self.nodes]
        try:
            share = SLOTS // self.masters
            for index, client in enumerate(clients[: self.masters]):
                first = index * share
                last = SLOTS - 1 if index == self.masters - 1 else first + share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus_port)
            self._until(lambda: all(self._known(client) for client in clients), timeout)
            for index, client in enumerate(clients[self.masters :]):
                master = self.nodes[index % self.masters]
                self._until(lambda c=client, m=master: self._replicate(c, m), timeout)
            self._until(lambda: all(self._settled(client) for client in clients), timeout)
        finally:
            for client in clients:
                client.close()

    @staticmethod
    def _until(condition: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise TimeoutError(f"the cluster did not settle in {timeout}s")

    def _known(self, client: Redis) -> bool:
        return self._info(client).get("cluster_known_nodes") == str(len(self.nodes))

    @staticmethod
    def _replicate(client: Redis, master: ClusterNode) -> bool:
        """CLUSTER REPLICATE, refused until the node has heard of the master."""
        try:
            client.execute_command("CLUSTER", "REPLICATE", master.node_id())
        except RedisError:
            return False
        return True

    @staticmethod
    def _info(client: Redis) -> dict[str, str]:
        info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def _settled(self, client: Redis) -> bool:
        fields = self._info(client)
        replication = parse_info(client.execute_command("INFO", "replication"))
        return (
            fields.get("cluster_state") == "ok"
            and fields.get("cluster_known_nodes") == str(len(self.nodes))
            and fields.get("cluster_slots_ok") == str(SLOTS)
            and replication.get("master_link_status", "up") == "up"
        )

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Until every running node sees the cluster ok and its replication link up."""

        def settled() -> bool:
            for node in self.nodes:
                if node.process is None:
                    return False
                try:
                    with node.client() as client:
                        if not self._settled(client):
                            return False
                except (RedisError, OSError):
                    return False
            return True

        self._until(settled, timeout)

    def roles(self) -> dict[int, str]:
        """Each running node's role now: ``master`` or ``slave``."""
        out = {}
        for index, node in enumerate(self.nodes):
            with contextlib.suppress(RedisError, OSError):
                out[index] = node.role()
        return out

    def primary_of(self, slot: int) -> ClusterNode:
        """The node that owns ``slot`` now, asked of a running node."""
        for node in self.nodes:
            if node.process is None:
                continue
            with contextlib.suppress(RedisError, OSError), node.client() as client:
                for first, last, owner, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if first <= slot <= last:
                        port = int(owner[1])
                        return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no running node knows who owns slot {slot}")

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        """A running replica of ``primary``."""
        for node in self.nodes:
            if node is primary or node.process is None:
                continue
            with contextlib.suppress(RedisError, OSError):
                info = node.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) in (
                    primary.port,
                    primary.proxy.port if primary.proxy is not None else -1,
                ):
                    return node
        raise LookupError(f"no replica of the node on {primary.port}")

    def kill(self, node: ClusterNode) -> None:
        """A kill -9 of the node alone: what it wrote to its sockets still arrives."""
        node.kill()

    def crash(self, node: ClusterNode) -> None:
        """A host crash: the node and its proxy killed together (what the proxy still
        held for the replica is lost with them)."""
        if node.proxy is not None:
            node.proxy.kill()
        node.kill()

    def _start_fresh(self, index: int, tries: int = 5) -> None:
        """Start a new node; a port taken meanwhile (ports are chosen before the
        servers bind them, and other processes open sockets too) is chosen again."""
        node = self.nodes[index]
        for _ in range(tries - 1):
            try:
                self._start(node)
                return
            except RuntimeError as exc:
                if "Address already in use" not in str(exc):
                    raise
            node.port, self.bus_ports[index] = free_port(), free_port()
            own = list(node.extra[: self._own_extra])
            own[5] = str(self.bus_ports[index])  # --cluster-port
            node.extra = tuple(own)
            if node.proxy is not None:
                node.proxy.kill()
        self._start(node)

    def _start(self, node: ClusterNode) -> None:
        """Start ``node``, behind a new lagging proxy when the cluster lags."""
        if self.lag is not None and (node.proxy is None or node.proxy.killed):
            node.proxy = DelayProxy(node.port, delay=self.lag)
            announce = (
                "--cluster-announce-port",
                str(node.proxy.start()),
                "--cluster-announce-client-port",
                str(node.port),
            )
            node.extra = (*node.extra[: self._own_extra], *announce)
        node.start()

    #: Arguments every node gets before the announced ports.
    _own_extra = 8

    def restart(self, node: ClusterNode) -> None:
        """Start a killed or crashed node again on its files (it rejoins as the cluster
        decides: a replica of the node promoted meanwhile)."""
        self._start(node)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            if node.proxy is not None:
                node.proxy.kill()

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
