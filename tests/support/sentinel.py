"""Redis Sentinel for the tests: one master, one or two replicas, one Sentinel, and a failover.

``ReplicatedSet`` starts them (Valkey by default, ``binary="redis"`` for the
machine's Redis) in their own directories; ``sentinel.failover()`` promotes a
replica and returns once it is the master, ``sentinel.url`` is the
``redis+sentinel://`` URL the service and consumers are given. ``link`` puts a
TCP proxy between the master and each replica (``link(port)`` returns the port
the replica connects to instead): a lagging link, for a host crash.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from tests.support.proxies import DelayProxy
from tests.support.servers import HOST, ServerProcess, ValkeyProcess, binary_path, parse_info


class Sentinel(ServerProcess):
    """A Sentinel watching ``master`` under ``name``, quorum 1 unless told (one decides).

    ``down_after_ms`` is how long the master must not answer before a failover;
    ``failover()`` forces one at once (SENTINEL FAILOVER, no vote needed).
    """

    def __init__(
        self,
        data_dir: Path,
        master: ValkeyProcess,
        *,
        name: str = "fanout",
        binary: str | None = None,
        port: int | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        monitor_port: int | None = None,
        extra: str = "",
        quorum: int = 1,
    ) -> None:
        super().__init__(data_dir, port, binary or master.binary)
        self.master = master
        self.name = name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.config = data_dir / "sentinel.conf"
        self.monitor_port = monitor_port or master.port  # a proxy's, to watch through it
        self.extra = extra  # more lines of sentinel.conf
        self.quorum = quorum

    @property
    def url(self) -> str:
        """The service's and consumers' FANOUT_REDIS_URL for this master."""
        return f"redis+sentinel://{HOST}:{self.port}/{self.name}"

    def port_changed(self) -> None:
        self.config.unlink(missing_ok=True)  # it names the port

    def args(self) -> list[str]:
        if not self.config.exists():  # Sentinel rewrites it as it learns; kept on restart
            self.config.write_text(
                f"port {self.port}\n"
                f"bind {HOST}\n"
                f"dir {self.data_dir}\n"
                f"sentinel monitor {self.name} {HOST} {self.monitor_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.name} 1\n{self.extra}"
            )
        return [binary_path(self.binary), str(self.config), "--sentinel"]

    def master_address(self) -> tuple[str, int]:
        with self.client() as client:
            host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    def replicas_known(self) -> int:
        with self.client() as client:
            return len(client.execute_command("SENTINEL", "REPLICAS", self.name) or [])

    def wait_replicas(self, count: int = 1, timeout: float = 15.0) -> None:
        """Until Sentinel has learned ``count`` replicas from the master's INFO."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.replicas_known() >= count:
                return
            time.sleep(0.1)
        raise TimeoutError(f"sentinel knows no {count} replica(s):\n{self.log[-2000:]}")

    def wait_others(self, count: int, timeout: float = 15.0) -> None:
        """Until this Sentinel has heard of ``count`` other Sentinels (through the master)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.client() as client:
                state = client.execute_command("SENTINEL", "MASTER", self.name)
            if int(state.get(b"num-other-sentinels", 0)) >= count:
                return
            time.sleep(0.1)
        raise TimeoutError(f"sentinel knows no {count} other sentinel(s):\n{self.log[-2000:]}")

    def wait_master(self, not_at: tuple[str, int], timeout: float = 20.0) -> tuple[str, int]:
        """Until Sentinel names a master other than ``not_at`` and that one is a master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            address = self.master_address()
            if address != not_at:
                with Redis(host=address[0], port=address[1], socket_timeout=2) as client:
                    try:
                        if (
                            parse_info(client.execute_command("INFO", "replication")).get("role")
                            == "master"
                        ):
                            return address
                    except RedisError:
                        pass
            time.sleep(0.05)
        raise TimeoutError(f"no failover away from {not_at} in {timeout}s:\n{self.log[-3000:]}")

    def failover(self, timeout: float = 20.0, *, demote: bool = True) -> tuple[str, int]:
        """Promote a replica now; returns the new master's address once it is one.

        Sentinel tells the old master to follow the new one only at its next
        INFO round, up to 10 s later; until then the old master still takes
        writes (which the resync then drops). ``demote`` sends it the REPLICAOF
        Sentinel would send, at once, so a test need not wait for that round.
        """
        old = self.master_address()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as client:
                    client.execute_command("SENTINEL", "FAILOVER", self.name)
                break
            except RedisError as exc:  # NOGOODSLAVE until it has seen the replica, INPROG
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SENTINEL FAILOVER refused: {exc}") from exc
                time.sleep(0.1)
        new = self.wait_master(old, max(1.0, deadline - time.monotonic()))
        if demote:
            with contextlib.suppress(RedisError), Redis(*old, socket_timeout=2) as client:
                client.execute_command("REPLICAOF", *new)
        return new


class ReplicatedSet:
    """One master, ``replicas`` replicas, one Sentinel, each in its own directory under
    ``root`` (AOF on, ``appendfsync`` as given: ``always`` is the embedded server's)."""

    def __init__(
        self,
        root: Path,
        *,
        binary: str = "valkey",
        name: str = "fanout",
        replicas: int = 1,
        appendfsync: str = "everysec",
        link: Callable[[int], int] | None = None,
        fronted: bool = False,
        sentinels: int = 1,
    ) -> None:
        self.master = ValkeyProcess(
            root / "a", binary=binary, appendonly=True, appendfsync=appendfsync
        )
        self.replicas = [
            ValkeyProcess(
                root / f"r{n}",
                binary=binary,
                appendonly=True,
                appendfsync=appendfsync,
                replicaof=None if link or fronted else self.master,
            )
            for n in range(replicas)
        ]
        self.link = link
        #: One Sentinel (quorum 1), or ``sentinels`` of them (quorum: a majority).
        self.sentinels = [
            Sentinel(
                root / ("sentinel" if n == 0 else f"sentinel{n}"),
                self.master,
                name=name,
                quorum=sentinels // 2 + 1,
            )
            for n in range(sentinels)
        ]
        self.sentinel = self.sentinels[0]
        #: With ``fronted``, a proxy before each server, named by Sentinel in its place,
        #: whose black hole (``hold()``) takes only the connections from 127.0.0.1: the
        #: servers and Sentinel connect from 127.0.0.2 (``bind-source-addr``).
        self.fronts: list[DelayProxy] = (
            [DelayProxy(server.port, hole_from=HOST) for server in self.servers] if fronted else []
        )

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL naming every Sentinel of the set."""
        hosts = ",".join(f"{HOST}:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.sentinel.name}"

    @property
    def replica(self) -> ValkeyProcess:
        return self.replicas[0]

    @property
    def servers(self) -> tuple[ValkeyProcess, ...]:
        return self.master, *self.replicas

    def by_address(self, address: tuple[str, int]) -> ValkeyProcess:
        return next(server for server in self.servers if server.address == address)

    def start(self) -> None:
        if self.fronts:
            self._front()
        self.master.start()
        for replica in self.replicas:
            if self.link is not None:
                replica.extra = (
                    *replica.extra,
                    "--replicaof",
                    HOST,
                    str(self.link(self.master.port)),
                )
            replica.start()
        for replica in self.replicas:
            replica.wait_synced()
        for sentinel in self.sentinels:
            sentinel.start()
        for sentinel in self.sentinels:
            sentinel.wait_replicas(len(self.replicas))
            sentinel.wait_others(len(self.sentinels) - 1)

    def _front(self) -> None:
        ports = [proxy.start() for proxy in self.fronts]
        for server, port in zip(self.servers, ports, strict=True):
            server.extra = (
                *server.extra,
                *("--bind-source-addr", "127.0.0.2", "--replica-announce-port", str(port)),
            )
        for replica in self.replicas:
            replica.extra = (*replica.extra, "--replicaof", HOST, str(ports[0]))
        for sentinel in self.sentinels:
            sentinel.monitor_port = ports[0]
            sentinel.extra = "bind-source-addr 127.0.0.2\n"

    def stop(self) -> None:
        for process in (*self.sentinels, *self.replicas, self.master):
            process.stop()
        for proxy in self.fronts:
            proxy.kill()

    def __enter__(self) -> ReplicatedSet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
