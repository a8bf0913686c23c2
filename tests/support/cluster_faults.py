"""A fault on one primary of a Redis Cluster under retrying load: acknowledged, lost, doubled.

The receiver (in process, the default durability unless told) writes to a cluster
of three primaries, each with a replica (Valkey 9, AOF on, ``appendfsync always``),
every replication link through a proxy 50 ms behind (``cluster.py``). Senders post
unique completions of all 22 types at a steady rate and retry every non-2xx after
50 ms until it is acknowledged (``senders.Senders``). The fault hits the
primary of one stream's slot ``before`` seconds into the load:

- ``kill``: SIGKILL of that primary; restarted (on its files) once its replica was
  promoted, as a supervisor would: it rejoins as the new primary's replica;
- ``planned``: ``CLUSTER FAILOVER FORCE`` on its replica (a planned failover
  without the old primary's agreement);
- ``lag``: the primary and its proxy killed together (a host crash: what the
  replica had not received yet is gone), then restarted as for ``kill``;
- ``blackhole``: 5 s in which nothing passes between the receiver and that node
  (connections left open), the cluster itself unharmed.

Then every completed stream is read: an acknowledged id missing is *lost*, an id
in its stream twice *doubled*. "first 2xx" is the time from the fault (the end of
a black hole) to the first 2xx of a delivery to that primary's streams that had
been refused.

    python -m tests.support.failover_runs --topology cluster --fault kill --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from service.config import Durability, Secret, Settings
from service.domain import actions
from service.http.app import create_app
from service.streams.connection import POOL_SIZE
from service.streams.keys import Keys
from tests.support.cluster import ClusterNode, ValkeyCluster
from tests.support.http import SECRET
from tests.support.load import Delivery, make_deliveries
from tests.support.proxies import DelayProxy
from tests.support.senders import Senders, longest_pause
from tests.support.servers import running_uvicorn

#: As for Sentinel (``failover_runs.FAULTS``): planned = CLUSTER FAILOVER FORCE, lag = host crash.
FAULTS = ("kill", "planned", "lag", "blackhole")
PREFIX = "cf"
#: The stream whose primary the fault hits.
VICTIM_TYPE = "ORDERS.IMPORT"
BLACKHOLE_SECONDS = 5.0
DEFAULT = Durability()


@dataclass
class ClusterFaultReport:
    fault: str
    durability: str
    offered: int
    acknowledged: int
    lost: int
    doubled: int
    answers: dict[int, int]
    #: Refused answers to deliveries of the faulted primary's streams (the rest: CLUSTERDOWN).
    refused_there: int
    first_2xx_after: float | None
    pause: float
    seconds: float
    lost_ids: list[str] = field(default_factory=list)
    #: ``planned``: scripts the old primary ran after its replica became the primary.
    old_primary_calls: int | None = None
    replicas: int = 1

    def line(self) -> str:
        first = "-" if self.first_2xx_after is None else f"{self.first_2xx_after:.2f}s"
        old = self.old_primary_calls
        old_text = "" if old is None else f", old primary ran {old} script calls after"
        return (
            f"cluster fault={self.fault} replicas={self.replicas} durability={self.durability}: "
            "acknowledged "
            f"{self.acknowledged}/{self.offered}, lost {self.lost}, doubled {self.doubled}, "
            f"503s {self.answers.get(503, 0)} ({self.refused_there} on the faulted primary's "
            f"streams), first 2xx after the fault {first}, longest pause {self.pause:.2f}s"
            f"{old_text}; "
            f"answers {dict(sorted(self.answers.items()))}, {self.seconds:.1f}s"
        )


def fault_cluster(root: Path, replicas: int = 1) -> ValkeyCluster:
    """Three primaries, ``replicas`` replicas each, AOF always, replication 50 ms behind."""
    return ValkeyCluster(
        root, masters=3, replicas=replicas, lag=0.05, appendonly=True, appendfsync="always"
    )


@contextlib.contextmanager
def client_proxies(cluster: ValkeyCluster) -> Iterator[dict[int, DelayProxy]]:
    """A proxy (no delay) in front of each node, for the receiver's connections alone."""
    proxies = {node.port: DelayProxy(node.port) for node in cluster.nodes}
    try:
        for proxy in proxies.values():
            proxy.start()
        yield proxies
    finally:
        for proxy in proxies.values():
            proxy.kill()


def receiver_client(cluster: ValkeyCluster, proxies: dict[int, DelayProxy]) -> RedisCluster:
    """The cluster client ``connection.connect`` makes, its connections through ``proxies``."""

    def remap(address: tuple[str, int]) -> tuple[str, int]:
        proxy = proxies.get(address[1])
        return (address[0], proxy.port) if proxy is not None else address

    node = cluster.nodes[0]
    return RedisCluster(
        host=node.address[0],
        port=proxies[node.port].port,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 1),
        max_connections=4 * POOL_SIZE,
        address_remap=remap,
    )


@contextlib.asynccontextmanager
async def receiving(
    cluster: ValkeyCluster, durability: Durability, client: RedisCluster | None
) -> AsyncIterator[str]:
    settings = Settings(
        redis_url=cluster.url,
        redis_cluster=True,
        secrets=(Secret(SECRET),),
        stream_prefix=PREFIX,
        durability=durability,
        redis_timeout=2.0,
    )
    async with running_uvicorn(create_app(settings, redis=client), settings) as base_url:
        yield base_url


def victim(cluster: ValkeyCluster, keys: Keys) -> tuple[ClusterNode, ClusterNode, set[str]]:
    """The primary of ``VICTIM_TYPE``'s slot, its replica, and the types it serves."""
    primary = cluster.primary_of(key_slot(keys.completed(VICTIM_TYPE).encode()))
    there = {
        type_
        for type_ in actions.TYPES
        if cluster.primary_of(key_slot(keys.completed(type_).encode())) is primary
    }
    return primary, cluster.replica_of(primary), there


def _restart_once_promoted(cluster: ValkeyCluster, old: ClusterNode, slot: int) -> None:
    """Restart ``old`` once another node owns ``slot`` (any of its replicas promoted)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if cluster.primary_of(slot) is not old:
                break
        time.sleep(0.05)
    cluster.restart(old)


async def stored_ids(cluster: ValkeyCluster, keys: Keys) -> collections.Counter[str]:
    client = RedisCluster(host=cluster.nodes[0].address[0], port=_running(cluster).port)
    try:
        seen: collections.Counter[str] = collections.Counter()
        for type_ in actions.TYPES:
            for _, fields in await client.xrange(keys.completed(type_)):
                seen[fields[b"id"].decode()] += 1
        return seen
    finally:
        await client.aclose()


def _running(cluster: ValkeyCluster) -> ClusterNode:
    return next(node for node in cluster.nodes if node.process is not None)


def first_2xx_there(deliveries: list[Delivery], there: set[str], fault: float) -> float | None:
    """From ``fault`` to the first 2xx of a delivery to the faulted primary's streams that
    had been refused (tried more than once); 0.0 when none was refused."""
    refused = [d for d in deliveries if d.type in there and d.attempts > 1]
    if not refused:
        return 0.0
    acked = [d.acked_at for d in refused if d.acked_at is not None and d.acked_at >= fault]
    return min(acked) - fault if acked else None


async def run_fault(
    cluster: ValkeyCluster,
    fault: str,
    *,
    durability: Durability = DEFAULT,
    rate: float = 150.0,
    concurrency: int = 24,
    offered_seconds: float = 20.0,
    before: float = 6.0,
    settle: float = 60.0,
) -> ClusterFaultReport:
    """One run on a running ``cluster``, which is left settled again afterwards."""
    assert fault in FAULTS, fault
    keys = Keys(PREFIX)
    primary, replica, there = victim(cluster, keys)
    slot = key_slot(keys.completed(VICTIM_TYPE).encode())
    deliveries = make_deliveries(int(rate * offered_seconds), actions.TYPES)
    with client_proxies(cluster) as proxies:
        client = receiver_client(cluster, proxies) if fault == "blackhole" else None
        async with receiving(cluster, durability, client) as base_url:
            senders = Senders(base_url, deliveries, rate, concurrency)
            started = time.monotonic()
            load = asyncio.create_task(senders.run(started + before + settle))
            await asyncio.sleep(before)
            at = time.monotonic()
            restart = None
            old_calls: int | None = None
            if fault in ("kill", "lag"):
                down = cluster.crash if fault == "lag" else cluster.kill
                await asyncio.to_thread(down, primary)
                restart = asyncio.create_task(
                    asyncio.to_thread(_restart_once_promoted, cluster, primary, slot)
                )
            elif fault == "planned":
                with replica.client() as admin:
                    await asyncio.to_thread(admin.execute_command, "CLUSTER", "FAILOVER", "FORCE")
                old_calls = await asyncio.to_thread(_calls_once_promoted, primary, replica)
            else:
                proxies[primary.port].hold()
                await asyncio.sleep(BLACKHOLE_SECONDS)
                proxies[primary.port].release()
                at = time.monotonic()
            await load
            seconds = time.monotonic() - started
            if restart is not None:
                await restart
        if client is not None:
            await client.aclose()
    await asyncio.to_thread(cluster.wait_settled)
    seen = await stored_ids(cluster, keys)
    acked = [d for d in deliveries if d.acked_at is not None]
    lost = [d.id for d in acked if seen[d.id] == 0]
    answers = collections.Counter(a.status for a in senders.attempts)
    refused_there = sum(
        d.attempts - (d.acked_at is not None) for d in deliveries if d.type in there
    )
    return ClusterFaultReport(
        fault=fault,
        durability=str(durability),
        offered=len(deliveries),
        acknowledged=len(acked),
        lost=len(lost),
        doubled=sum(1 for n in seen.values() if n > 1),
        answers=dict(answers),
        refused_there=refused_there,
        first_2xx_after=first_2xx_there(deliveries, there, at),
        pause=longest_pause(senders.attempts, at),
        seconds=seconds,
        lost_ids=lost,
        old_primary_calls=None if old_calls is None else _script_calls(primary) - old_calls,
        replicas=len(cluster.nodes) // cluster.masters - 1,
    )


def _script_calls(node: ClusterNode) -> int:
    with node.client() as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def _calls_once_promoted(old: ClusterNode, replica: ClusterNode) -> int:
    """The old primary's script calls at the moment its replica reports the primary role
    (polled every 5 ms)."""
    deadline = time.monotonic() + 10
    while replica.role() != "master" and time.monotonic() < deadline:
        time.sleep(0.005)
    return _script_calls(old)


async def measure(
    root: Path, fault: str, durability: Durability = DEFAULT, replicas: int = 1, **load: float
) -> ClusterFaultReport:
    """One run with a cluster of its own under ``root``."""
    with fault_cluster(root, replicas) as cluster:
        return await run_fault(cluster, fault, durability=durability, **load)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault", choices=FAULTS, default="kill")
    parser.add_argument("--durability", default="default", help="FANOUT_DURABILITY, or default")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="of offered load")
    parser.add_argument("--before", type=float, default=6.0, help="seconds into the load")
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--replicas", type=int, default=1, help="per primary")
    args = parser.parse_args(argv)
    durability = DEFAULT
    if args.durability != "default":
        durability = Settings.from_env({"FANOUT_DURABILITY": args.durability}).durability
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="fanout-cluster-fault-") as root:
            report = asyncio.run(
                measure(
                    Path(root),
                    args.fault,
                    durability,
                    args.replicas,
                    offered_seconds=args.seconds,
                    before=args.before,
                    rate=args.rate,
                )
            )
        print(f"[{run + 1}] {report.line()}", flush=True)


if __name__ == "__main__":
    main()
