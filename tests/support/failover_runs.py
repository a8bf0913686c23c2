"""A fault under retrying load on a replicated Redis: what was acknowledged, lost, doubled.

`fanout serve` (default durability unless told) writes through Sentinel to a
master with one or two replicas (Valkey 9, AOF on, ``appendfsync always``);
senders post unique completions at a steady rate over keep-alive connections and
retry every non-2xx after 50 ms until it is acknowledged; the fault comes
``before`` seconds into the load; the load goes on until every delivery was
acknowledged (or ``settle`` seconds passed). Then every completed stream is read
on the primary Sentinel names: an acknowledged id missing is *lost*, an id in
its stream twice is *doubled*.

Faults: ``kill`` (SIGKILL of the master), ``planned`` (``SENTINEL FAILOVER``, the
old master left for Sentinel to demote), ``lag`` (each replica behind a TCP proxy
that delays the replication stream by 50 ms; master and proxy killed together: a
host crash), ``blackhole`` (5 s in which nothing passes between the receiver and
Valkey, connections left open), ``deaf`` (the receiver reaches Sentinel through a
proxy that black-holes it for 6 s, and a planned failover runs in those 6 s: the
receiver hears no event and no answer of Sentinel's until it is over). ``deaf`` is
not in ``FAULTS``, the suite's set; ``test_sentinel_faults`` runs it on its own.

    python -m tests.support.failover_runs --topology sentinel --replicas 2 --fault planned --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from service.domain import actions
from service.streams.keys import Keys
from tests.support.http import SECRET
from tests.support.load import make_deliveries
from tests.support.redis_servers import HOST
from tests.support.senders import Senders, first_2xx_after, longest_pause
from tests.support.sentinel import ReplicatedSet
from tests.support.servers import FanoutProcess

FAULTS = ("kill", "planned", "lag", "blackhole")
#: Every fault this harness can run.
ALL_FAULTS = (*FAULTS, "deaf")
#: Seconds the receiver hears nothing from Sentinel in a ``deaf`` run.
DEAF_SECONDS = 6.0
PREFIX = "fo"


@dataclass
class FaultReport:
    fault: str
    replicas: int
    durability: str
    offered: int
    acknowledged: int
    lost: int
    doubled: int
    answers: dict[int, int]
    first_2xx_after: float | None  # seconds from the fault (end of a black hole) to 2xx again
    old_primary_calls: int | None  # script calls the old primary ran after a replica's promotion
    pause: float  # the longest time after the fault with no 2xx at all
    seconds: float
    lost_ids: list[str] = field(default_factory=list)

    def line(self) -> str:
        first = "-" if self.first_2xx_after is None else f"{self.first_2xx_after:.2f}s"
        old = self.old_primary_calls
        old_text = "" if old is None else f", old primary ran {old} scripts after the promotion"
        refused = sum(n for status, n in self.answers.items() if not 200 <= status < 300)
        return (
            f"sentinel replicas={self.replicas} fault={self.fault} durability={self.durability}: "
            f"acknowledged {self.acknowledged}/{self.offered}, lost {self.lost}, doubled "
            f"{self.doubled}, 503s {self.answers.get(503, 0)} (non-2xx {refused}), first 2xx "
            f"after the fault {first}, longest pause {self.pause:.2f}s{old_text}; answers "
            f"{dict(sorted(self.answers.items()))}, {self.seconds:.1f}s"
        )


async def count_ids(url: tuple[str, int], keys: Keys) -> collections.Counter[str]:
    client = Redis(host=url[0], port=url[1], socket_timeout=10)
    try:
        seen: collections.Counter[str] = collections.Counter()
        for type_ in actions.TYPES:
            for _, fields in await client.xrange(keys.completed(type_)):
                seen[fields[b"id"].decode()] += 1
        return seen
    finally:
        await client.aclose()


async def script_calls(address: tuple[str, int]) -> int | None:
    """EVALSHA calls the server at ``address`` ran so far, None when it does not answer."""
    client = Redis(host=address[0], port=address[1], socket_timeout=2)
    try:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    except (OSError, Exception):
        return None
    finally:
        await client.aclose()


async def run_fault(
    group: ReplicatedSet,
    receiver: str,
    fault: str,
    *,
    durability: str = "default",
    rate: float = 150.0,
    concurrency: int = 24,
    offered_seconds: float = 4.0,
    before: float = 1.5,
    settle: float = 40.0,
    link_proxies: Sequence[object] = (),
    sentinel_fronts: Sequence[object] = (),
) -> FaultReport:
    """The fault ``before`` seconds into the load at ``receiver``; the set must run.

    Deliveries are offered for ``offered_seconds``, and at least 1 s after the fault
    is in place (a planned failover returns once the replica is promoted; a black
    hole once it ends), so the load always meets it."""
    assert fault in ALL_FAULTS, fault
    most = int(rate * (before + offered_seconds + 10.0))
    senders = Senders(receiver, make_deliveries(most, actions.TYPES), rate, concurrency)
    started = time.monotonic()
    load = asyncio.create_task(senders.run(started + before + settle))
    await asyncio.sleep(before)
    old = group.master.address
    old_calls: int | None = None
    at = time.monotonic()
    restart: asyncio.Task[None] | None = None
    if fault in ("kill", "lag"):
        for proxy in link_proxies:  # the host's network goes with it: what it holds is lost
            proxy.kill()  # type: ignore[attr-defined]
        await asyncio.to_thread(group.master.kill)
        # As a supervisor would, once Sentinel named another: it rejoins as a replica.
        restart = asyncio.create_task(asyncio.to_thread(_restart_after_failover, group, old))
    elif fault == "planned":
        promoted = asyncio.create_task(_calls_at_promotion(group, old))
        await asyncio.to_thread(group.sentinel.failover, demote=False)
        old_calls = await promoted
    elif fault == "deaf":
        for proxy in sentinel_fronts:
            proxy.hold()  # type: ignore[attr-defined]
        await asyncio.to_thread(group.sentinel.failover, demote=False)
        await asyncio.sleep(max(0.0, at + DEAF_SECONDS - time.monotonic()))
        for proxy in sentinel_fronts:
            proxy.release()  # type: ignore[attr-defined]
    elif fault == "blackhole":
        for proxy in group.fronts:
            proxy.hold()
        await asyncio.sleep(5.0)
        for proxy in group.fronts:
            proxy.release()
        at = time.monotonic()
    senders.enough(max(started + offered_seconds, time.monotonic() + 1.0))
    await load
    seconds = time.monotonic() - started
    if restart is not None:
        await restart
    new_master = await asyncio.to_thread(group.sentinel.master_address)
    if fault == "planned" and old_calls is not None:
        later = await script_calls(old)
        old_calls = None if later is None else later - old_calls
    seen = await count_ids(new_master, Keys(PREFIX))
    deliveries = senders.offered
    acked = [d for d in deliveries if d.acked_at is not None]
    lost = [d.id for d in acked if seen[d.id] == 0]
    answers = collections.Counter(a.status for a in senders.attempts)
    return FaultReport(
        fault=fault,
        replicas=len(group.replicas),
        durability=durability,
        offered=len(deliveries),
        acknowledged=len(acked),
        lost=len(lost),
        doubled=sum(1 for n in seen.values() if n > 1),
        answers=dict(answers),
        first_2xx_after=(
            min(
                (a.ended - at for a in senders.attempts if a.ended >= at and a.status // 100 == 2),
                default=None,
            )
            if fault == "blackhole"  # from the end of the black hole
            else first_2xx_after(senders.attempts, at)
        ),
        old_primary_calls=old_calls if fault == "planned" else None,
        pause=longest_pause(senders.attempts, at),
        seconds=seconds,
        lost_ids=lost,
    )


async def _calls_at_promotion(group: ReplicatedSet, old: tuple[str, int]) -> int | None:
    """The old primary's script calls at the moment a replica turned master (polled every
    5 ms): what it runs from then on is written where the new primary never sees it."""
    clients = [Redis(host=host, port=port, socket_timeout=2) for host, port in _replicas(group)]
    try:
        for _ in range(4000):
            for client in clients:
                if (await client.info("replication")).get("role") == "master":
                    return await script_calls(old)
            await asyncio.sleep(0.005)
        return None
    finally:
        for client in clients:
            await client.aclose()


def _replicas(group: ReplicatedSet) -> list[tuple[str, int]]:
    return [replica.address for replica in group.replicas]


def _restart_after_failover(group: ReplicatedSet, old: tuple[str, int]) -> None:
    group.sentinel.wait_master(not_at=old, timeout=30)
    group.master.start()


def receiver_env(group: ReplicatedSet, durability: str = "default") -> dict[str, str]:
    env = {
        "FANOUT_SECRETS": SECRET,
        "FANOUT_REDIS_URL": group.url,
        "FANOUT_STREAM_PREFIX": PREFIX,
        "FANOUT_REDIS_TIMEOUT": "2",
    }
    if durability != "default":
        env["FANOUT_DURABILITY"] = durability
    return env


async def measure(
    root: Path,
    fault: str,
    replicas: int,
    durability: str = "default",
    *,
    sentinels: int = 1,
    binary: str = "valkey",
    **load: float,
) -> FaultReport:
    """One run with its own servers under ``root``; ``load``: ``run_fault``'s figures."""
    from tests.support.proxies import DelayProxy

    proxies: list[DelayProxy] = []

    def link(port: int) -> int:
        proxy = DelayProxy(port, delay=0.05)
        proxies.append(proxy)
        return proxy.start()

    group = ReplicatedSet(
        root,
        replicas=replicas,
        appendfsync="always",
        link=link if fault == "lag" else None,
        fronted=fault == "blackhole",
        sentinels=sentinels,
        binary=binary,
    )
    await asyncio.to_thread(group.start)  # each step in a thread: runs may go side by side
    env = receiver_env(group, durability)
    fronts: list[DelayProxy] = []
    if fault == "deaf":  # the receiver's only way to Sentinel, which hears it directly
        fronts = [DelayProxy(sentinel.port, hole_from=HOST) for sentinel in group.sentinels]
        hosts = ",".join(f"{HOST}:{proxy.start()}" for proxy in fronts)
        env["FANOUT_REDIS_URL"] = f"redis+sentinel://{hosts}/{group.sentinel.name}"
    try:
        receiver = FanoutProcess(root / "fanout.log", env=env)
        # Bounded generously: eight runs start side by side in the suite, on a shared machine.
        await asyncio.to_thread(receiver.start, 90.0)
        try:
            return await run_fault(
                group,
                receiver.base_url,
                fault,
                durability=durability,
                link_proxies=proxies,
                sentinel_fronts=fronts,
                **load,  # type: ignore[arg-type]
            )
        finally:
            await asyncio.to_thread(receiver.stop)
    finally:
        await asyncio.to_thread(group.stop)
        for proxy in [*proxies, *fronts]:
            proxy.kill()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", default="sentinel", choices=["sentinel", "cluster"])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--fault", choices=ALL_FAULTS, default="planned")
    parser.add_argument("--durability", default="default", help="FANOUT_DURABILITY, or default")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sentinels", type=int, default=1, help="Sentinels (quorum a majority)")
    parser.add_argument("--binary", default="valkey", help="valkey (9), redis (the machine's)")
    args = parser.parse_args(argv)
    if args.topology == "cluster":  # three primaries, --replicas each (it imports this module)
        from tests.support import cluster_faults

        options = ["--fault", args.fault, "--durability", args.durability]
        cluster_faults.main([*options, "--runs", str(args.runs), "--replicas", str(args.replicas)])
        return
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="fanout-failover-") as root:
            report = asyncio.run(
                measure(
                    Path(root),
                    args.fault,
                    args.replicas,
                    args.durability,
                    sentinels=args.sentinels,
                    binary=args.binary,
                )
            )
        print(f"[{run + 1}] {args.binary} sentinels={args.sentinels} {report.line()}", flush=True)


if __name__ == "__main__":
    main()
