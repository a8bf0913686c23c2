"""Issue 13's headline: acknowledged deliveries lost when Redis is killed on a slow disk.

A retrying sender posts unique completions to a receiver; the data server's
fsyncs are slowed by strace; once enough deliveries were acknowledged (or a
time limit passed) the server gets SIGKILL, the sender stops, the server is
started again on the same files, and every acknowledged delivery is looked up
in its stream. A 2xx whose entry is missing is a lost delivery: the sender
will never send it again.

As a script (``fanout serve`` as a child process, figures printed)::

    python -m tests.support.loss --binary valkey --durability none --deliveries 5000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from redis.asyncio import Redis

from service.domain import actions
from service.streams.keys import Keys
from tests.support.load import Connection, Delivery, Tally, deliver, make_deliveries
from tests.support.servers import ValkeyProcess
from tests.support.slowdisk import SlowDisk


@dataclass
class LossReport:
    offered: int
    acknowledged: int
    lost: int
    answers: dict[int, int]
    seconds_to_kill: float
    delayed_fsyncs: int
    lost_ids: list[str] = field(default_factory=list)
    #: With ``when_buffered``: whether the kill found the server holding AOF data it had
    #: not written yet (False: the moment did not come in time; the kill came anyway).
    buffered: bool | None = None
    #: With ``when_buffered``: entries the server held just before the kill and not after
    #: its restart (at least; more came meanwhile). 0: the kill destroyed no entry, and a
    #: mode that answers before the disk could not show a loss in this run.
    destroyed: int | None = None

    @property
    def rate(self) -> float:
        return self.acknowledged / self.seconds_to_kill if self.seconds_to_kill else 0.0

    def line(self) -> str:
        return (
            f"{self.acknowledged} acknowledged of {self.offered} offered in "
            f"{self.seconds_to_kill:.1f}s ({self.rate:.0f}/s), lost after restart: {self.lost}; "
            f"answers {dict(sorted(self.answers.items()))}, fsyncs delayed {self.delayed_fsyncs}"
            + ("" if self.buffered is None else f", killed while buffered: {self.buffered}")
            + ("" if self.destroyed is None else f", entries destroyed: {self.destroyed}")
        )


async def ids_in_streams(url: str, keys: Keys, types: Sequence[str]) -> collections.Counter[str]:
    """How many times each action id appears in the completed streams."""
    client = Redis.from_url(url)
    try:
        seen: collections.Counter[str] = collections.Counter()
        for type_ in types:
            for _, fields in await client.xrange(keys.completed(type_)):
                seen[fields[b"id"].decode()] += 1
        return seen
    finally:
        await client.aclose()


async def kill_under_load(
    server: ValkeyProcess,
    base_url: str,
    keys: Keys,
    *,
    deliveries: list[Delivery],
    kill_after_acks: int,
    kill_after_seconds: float = 20.0,
    slow_disk: float | None = 2.5,
    concurrency: int = 32,
    when_buffered: float = 0.0,
) -> LossReport:
    """Load, slow disk, SIGKILL, restart; the acknowledged deliveries missing afterwards.

    The server must run (``server.start()``) and the receiver at ``base_url``
    must write to it. The server is left running again, with its old files.

    With ``when_buffered`` the kill waits (up to that many seconds) for a moment
    when the server holds AOF data it has not even written to the file yet
    (``aof_buffer_length`` > 0: under ``everysec`` it postpones writes for up
    to 2 s while an fsync is slow): the worst moment, so a mode that answers
    before the data is safe shows its loss on every run, not by chance.
    """
    tally = Tally()
    types = sorted({d.type for d in deliveries})
    disk = SlowDisk(server.pid, slow_disk) if slow_disk else None
    if disk is not None:
        await asyncio.to_thread(disk.start)
    stop = asyncio.Event()
    senders = [
        asyncio.create_task(_send(base_url, pending, tally, stop))
        for pending in _split(deliveries, concurrency)
    ]
    started = time.monotonic()
    try:
        deadline = started + kill_after_seconds
        while len(tally.acks) < kill_after_acks and time.monotonic() < deadline:
            if all(sender.done() for sender in senders):
                break
            await asyncio.sleep(0.005)
        buffered = await _until_buffered(server, when_buffered) if when_buffered else None
        held = await _entries(server.url, keys, types) if when_buffered else None
        killed = time.monotonic()
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.5)  # answers already on the wire still arrive
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*senders, return_exceptions=True), 15)
        delayed = disk.delayed if disk is not None else 0
        if disk is not None:
            await asyncio.to_thread(disk.stop)
    await asyncio.to_thread(server.start)
    seen = await ids_in_streams(server.url, keys, types)
    acked = [d for d in deliveries if d.status is not None and 200 <= d.status < 300]
    lost = [d.id for d in acked if seen[d.id] == 0]
    late = [d.id for d in acked if d.acked_at is not None and d.acked_at > killed + 0.5]
    assert not late, f"{len(late)} deliveries were acknowledged after the kill"
    return LossReport(
        offered=len(deliveries),
        acknowledged=len(acked),
        lost=len(lost),
        answers=dict(tally.answers),
        seconds_to_kill=killed - started,
        delayed_fsyncs=delayed,
        lost_ids=lost,
        buffered=buffered,
        destroyed=None if held is None else max(0, held - sum(seen.values())),
    )


def _split(deliveries: list[Delivery], parts: int) -> list[collections.deque[Delivery]]:
    return [collections.deque(deliveries[n::parts]) for n in range(parts)]


async def _send(
    base_url: str, pending: collections.deque[Delivery], tally: Tally, stop: asyncio.Event
) -> None:
    """One connection: each delivery until it gets a 2xx, retried after 50 ms; until ``stop``."""
    url = httpx.URL(base_url)
    assert url.port is not None
    connection = Connection(url.host, url.port)
    try:
        while pending and not stop.is_set():
            delivery = pending.popleft()
            await deliver(
                connection, delivery, tally, max_attempts=delivery.attempts + 1, deadline=math.inf
            )
            if delivery.acked_at is None:
                pending.appendleft(delivery)
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def _entries(url: str, keys: Keys, types: Sequence[str]) -> int:
    """Entries in the completed streams of ``types`` now."""
    client = Redis.from_url(url, socket_timeout=5)
    try:
        return sum([await client.xlen(keys.completed(type_)) for type_ in types])
    finally:
        await client.aclose()


#: Seconds the server must keep holding unwritten AOF data before the kill: long enough
#: for the answers of what it holds to reach their senders (a loaded machine is slow to
#: pass them on), well inside the server's 2 s of postponed writes.
SETTLE = 0.2


async def _until_buffered(server: ValkeyProcess, within: float) -> bool:
    """Wait up to ``within`` seconds for the server to hold unwritten AOF data, and to
    still hold some ``SETTLE`` seconds later; whether it did."""
    client = Redis.from_url(server.url, socket_timeout=within)

    async def buffered() -> bool:
        info = await client.info("persistence")
        return int(info.get("aof_buffer_length", 0)) > 0

    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await buffered():
                await asyncio.sleep(SETTLE)
                if await buffered():
                    return True
            await asyncio.sleep(0.002)
        return False
    finally:
        await client.aclose()


# --- as a script: `fanout serve` as a child process --------------------------------


async def measure(
    root: Path,
    *,
    durability: str | None,
    deliveries: int,
    kill_after: int,
    seconds: float = 20.0,
    binary: str = "valkey",
    appendfsync: str = "everysec",
    delay: float | None = 2.5,
    concurrency: int = 32,
    redis_timeout: float = 2.0,
    when_buffered: float = 0.0,
) -> LossReport:
    """The scenario with ``fanout serve`` as a child process (``durability`` None: the
    default) and its own data server under ``root``."""
    from tests.support.http import SECRET
    from tests.support.servers import FanoutProcess

    server = ValkeyProcess(root / "data", binary=binary, appendonly=True, appendfsync=appendfsync)
    server.start()
    env = {
        "FANOUT_SECRETS": SECRET,
        "FANOUT_REDIS_URL": server.url,
        "FANOUT_STREAM_PREFIX": "loss",
        "FANOUT_REDIS_TIMEOUT": str(redis_timeout),
    }
    if durability is not None:
        env["FANOUT_DURABILITY"] = durability
    receiver = FanoutProcess(root / "fanout.log", env=env)
    try:
        receiver.start()
        return await kill_under_load(
            server,
            receiver.base_url,
            Keys("loss"),
            deliveries=make_deliveries(deliveries, actions.TYPES),
            kill_after_acks=kill_after,
            kill_after_seconds=seconds,
            slow_disk=delay,
            concurrency=concurrency,
            when_buffered=when_buffered,
        )
    finally:
        receiver.stop()
        server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="valkey", help="valkey, redis or a path")
    parser.add_argument("--durability", default="default", help="FANOUT_DURABILITY, or default")
    parser.add_argument("--appendfsync", default="everysec")
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--kill-after", type=int, default=0, help="acks (default 80%%)")
    parser.add_argument("--seconds", type=float, default=20.0, help="kill by then anyway")
    parser.add_argument("--delay", type=float, default=2.5, help="fsync delay, 0 for none")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis-timeout", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--when-buffered", type=float, default=0.0, help="wait up to S s for unwritten AOF data"
    )
    args = parser.parse_args(argv)
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="fanout-loss-") as root:
            report = asyncio.run(
                measure(
                    Path(root),
                    durability=None if args.durability == "default" else args.durability,
                    deliveries=args.deliveries,
                    kill_after=args.kill_after or int(args.deliveries * 0.8),
                    seconds=args.seconds,
                    binary=args.binary,
                    appendfsync=args.appendfsync,
                    delay=args.delay or None,
                    concurrency=args.concurrency,
                    redis_timeout=args.redis_timeout,
                    when_buffered=args.when_buffered,
                )
            )
        print(
            f"[{run + 1}] {args.binary} appendfsync={args.appendfsync} "
            f"durability={args.durability} fsync+{args.delay}s: {report.line()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
