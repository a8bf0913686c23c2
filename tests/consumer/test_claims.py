"""Issue 13 on the consumer side: no handler runs twice at once, trimmed entries are
reported, a server that turns replica does not kill the consumer."""

from __future__ import annotations

import asyncio
import collections
import logging
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.consumer import Consumer
from service.domain.completion import CompletionEvent
from service.streams.dead_letters import DeadLetter
from service.streams.keys import Keys
from tests.support.feed import append, running, until
from tests.support.servers import ValkeyProcess

TYPE = "VOUCHERS.IMPORT"
FAST = {"handler_timeout": 0.3, "min_idle": 0.9, "claim_interval": 0.1, "block": 0.1}


def member(redis: Redis, keys: Keys, name: str, **options: object) -> Consumer:
    settings = FAST | options
    return Consumer(redis, "g", prefix=keys.prefix, name=name, types=[TYPE], **settings)  # type: ignore[arg-type]


class Overlap:
    """A handler whose first run of each event outlives its timeout: cancelled, it
    cleans up for ``cleanup`` seconds more before it gives in. Later runs succeed."""

    def __init__(self, cleanup: float) -> None:
        self.cleanup = cleanup
        self.active: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.runs: collections.Counter[str] = collections.Counter()
        self.done: set[str] = set()

    async def __call__(self, event: CompletionEvent) -> None:
        self.active[event.id] += 1
        self.runs[event.id] += 1
        self.peak[event.id] = max(self.peak[event.id], self.active[event.id])
        try:
            if self.runs[event.id] == 1:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    await asyncio.sleep(self.cleanup)  # cleanup that is not cut short
                    raise
            self.done.add(event.id)
        finally:
            self.active[event.id] -= 1


async def test_a_handler_past_its_timeout_is_not_run_again_meanwhile(
    redis: Redis, keys: Keys
) -> None:
    # Before: 6 of 6 events were handled twice at once by the second consumer.
    ids = await append(redis, keys, TYPE, 6)
    handler = Overlap(cleanup=2.5)  # timeout 0.3 s + 2.5 s of cleanup, min_idle 0.9 s
    a, b = member(redis, keys, "a", concurrency=6), member(redis, keys, "b", concurrency=6)
    async with running(a, handler), running(b, handler):
        await until(lambda: handler.done == set(ids), within=20)
    assert max(handler.peak.values()) == 1, f"handled twice at once: {handler.peak}"
    assert all(handler.runs[i] >= 2 for i in ids), "each first run failed and was retried"
    assert a.stats.failed + b.stats.failed == 6
    assert a.stats.handled + b.stats.handled == 6
    assert await redis.xpending(keys.completed(TYPE), "g") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_an_entry_claimed_back_while_it_runs_here_is_not_run_twice(
    redis: Redis, keys: Keys
) -> None:
    # Without its keep-alive the entry goes idle, and this consumer's own claim loop
    # takes it back: the entry is already running here, so it is not started again.
    [id_] = await append(redis, keys, TYPE, 1)
    handler = Overlap(cleanup=2.0)
    alone = member(redis, keys, "alone")
    alone._running.interval = 3600  # no keep-alive (a stand-in for a slow Redis)
    async with running(alone, handler):
        await until(lambda: id_ in handler.done, within=20)
    assert handler.peak[id_] == 1


async def test_pending_entries_deleted_from_the_stream_are_dead_lettered_as_trimmed(
    redis: Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    # The group was given three entries and did not acknowledge them; an operator
    # trimmed the stream. Before: acknowledged silently, as if handled.
    stream = keys.completed(TYPE)
    await append(redis, keys, TYPE, 5)
    await redis.xgroup_create(stream, "g", id="0")
    delivered = await redis.xreadgroup("g", "gone", {stream: ">"}, count=3)
    lost = [entry_id.decode() for entry_id, _ in delivered[0][1]]
    await redis.xtrim(stream, maxlen=2, approximate=False)
    handled: list[str] = []

    async def handle(event: CompletionEvent) -> None:
        handled.append(event.id)

    survivor = member(redis, keys, "survivor", min_idle=0.5, handler_timeout=0.2)
    with caplog.at_level(logging.ERROR, logger="service.consumer"):
        async with running(survivor, handle):
            await until(lambda: survivor.stats.trimmed == 3 and len(handled) == 2)
    letters = [DeadLetter.from_fields(f) for _, f in await redis.xrange(keys.dead_letters())]
    assert sorted((x.reason, x.entry_id, x.group, x.stream) for x in letters) == sorted(
        ("trimmed", entry_id, "g", stream) for entry_id in lost
    )
    assert all(x.body == b"" and "acknowledged" in x.detail for x in letters)
    assert sum("deleted before group g acknowledged" in r.message for r in caplog.records) == 3
    assert (await redis.xpending(stream, "g"))["pending"] == 0


@pytest.mark.spawns
async def test_the_consumer_survives_its_server_turning_replica_and_back(
    keys: Keys, tmp_path: Path
) -> None:
    # A failover seen from a consumer on a plain URL: its server becomes a replica
    # (a blocked read is cut short with UNBLOCKED, then reads get READONLY), and
    # later a master again. Before: the consumer died on the first error.
    primary = ValkeyProcess(tmp_path / "a")
    other = ValkeyProcess(tmp_path / "b")
    primary.start()
    other.start()
    redis = Redis.from_url(primary.url)
    admin = Redis.from_url(primary.url)
    handled: list[str] = []

    async def handle(event: CompletionEvent) -> None:
        handled.append(event.id)

    try:
        worker = member(redis, keys, "w", block=0.5)
        async with running(worker, handle) as task:
            first = await append(admin, keys, TYPE, 3)
            await until(lambda: len(handled) == 3)
            await asyncio.sleep(0.2)  # the next read is blocked on the server
            await admin.execute_command("REPLICAOF", "127.0.0.1", other.port)
            await asyncio.sleep(2)  # READONLY, UNBLOCKED: retried with back-off
            assert not task.done()
            await admin.execute_command("REPLICAOF", "NO", "ONE")
            await admin.xgroup_create(keys.completed(TYPE), "g", id="0", mkstream=True)
            later = await append(admin, keys, TYPE, 3)
            await until(lambda: set(later) <= set(handled), within=15)
        assert set(first) <= set(handled)
    finally:
        await redis.aclose()
        await admin.aclose()
        primary.stop()
        other.stop()
