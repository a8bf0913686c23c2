"""The consumer library against a real Redis: typed events, acks, claims, poison, fan-out."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from service.config import Settings
from service.consumer import Consumer
from service.domain import actions, completion, outbound, samples
from service.domain.completion import CompletionEvent
from service.streams.keys import Keys
from service.streams.publisher import Accepted, Publisher
from tests.support.feed import append, running, until

ROOT = Path(__file__).resolve().parents[2]
FAST = {"handler_timeout": 0.3, "min_idle": 0.5, "claim_interval": 0.1, "block": 0.1}


def consumer(redis: Redis, keys: Keys, group: str, **options: object) -> Consumer:
    settings = FAST | options
    return Consumer(redis, group, prefix=keys.prefix, **settings)  # type: ignore[arg-type]


async def pending(redis: Redis, stream: str, group: str) -> int:
    info = await redis.xpending(stream, group)
    return int(info["pending"])


async def test_events_arrive_typed_through_the_publish_path(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    publisher = Publisher.from_settings(redis, settings)
    action = actions.decode(msgspec.json.encode(samples.sample("VOUCHERS.IMPORT")))
    outcome = await publisher.publish(outbound.publication(action, datetime.now(UTC)))
    assert isinstance(outcome, Accepted)
    received: list[CompletionEvent] = []

    async def handle(event: CompletionEvent) -> None:
        received.append(event)

    member = consumer(redis, keys, "billing", types=["VOUCHERS.IMPORT", "ORDERS.IMPORT"])
    async with running(member, handle):
        await until(lambda: received)
    [event] = received
    assert type(event) is completion.EVENT_BY_TYPE["VOUCHERS.IMPORT"]
    match event.result:
        case actions.VoucherImportResult(failed=failed, failed_count=2):
            assert isinstance(failed, list) and len(failed) == 2
        case other:
            pytest.fail(f"untyped result: {other!r}")
    assert event.id == action.id
    assert await pending(redis, keys.completed("VOUCHERS.IMPORT"), "billing") == 0


async def test_start_now_skips_history_and_beginning_reads_it(redis: Redis, keys: Keys) -> None:
    await append(redis, keys, "SKUS.IMPORT_CSV", 3)
    seen: dict[str, list[str]] = collections.defaultdict(list)

    def collect(group: str):  # type: ignore[no-untyped-def]
        async def handle(event: CompletionEvent) -> None:
            seen[group].append(event.id)

        return handle

    old = consumer(redis, keys, "old", types=["SKUS.IMPORT_CSV"], start="beginning")
    new = consumer(redis, keys, "new", types=["SKUS.IMPORT_CSV"], start="now")
    async with running(old, collect("old")), running(new, collect("new")):
        [later] = await append(redis, keys, "SKUS.IMPORT_CSV", 1)
        await until(lambda: len(seen["old"]) == 4 and len(seen["new"]) == 1)
    assert seen["new"] == [later]
    assert seen["old"][-1] == later


async def test_two_groups_each_get_every_event_and_members_share_the_work(
    redis: Redis, keys: Keys
) -> None:
    types = ["ORDERS.IMPORT", "CUSTOMERS.IMPORT_CSV", "PRODUCTS.BULK_UPDATE"]
    handled: collections.Counter[tuple[str, str]] = collections.Counter()
    by_member: collections.Counter[str] = collections.Counter()

    def make(group: str, name: str) -> tuple[Consumer, object]:
        async def handle(event: CompletionEvent) -> None:
            handled[(group, event.id)] += 1
            by_member[name] += 1
            await asyncio.sleep(0.005)

        return consumer(redis, keys, group, name=name, types=types, concurrency=4), handle

    members = [make("audit", "a1"), make("audit", "a2"), make("mail", "m1")]
    async with (
        running(members[0][0], members[0][1]),  # type: ignore[arg-type]
        running(members[1][0], members[1][1]),  # type: ignore[arg-type]
        running(members[2][0], members[2][1]),  # type: ignore[arg-type]
    ):
        ids = []
        for type_ in types:
            ids += await append(redis, keys, type_, 40)
        await until(lambda: sum(handled.values()) == 2 * len(ids))
    assert set(handled) == {(g, i) for g in ("audit", "mail") for i in ids}
    assert set(handled.values()) == {1}
    assert by_member["m1"] == len(ids)
    assert by_member["a1"] + by_member["a2"] == len(ids)
    assert by_member["a1"] > 0 and by_member["a2"] > 0, by_member


async def test_a_raising_handler_leaves_the_entry_pending_then_it_is_claimed(
    redis: Redis, keys: Keys
) -> None:
    stream = keys.completed("ORDERS.IMPORT")
    attempts: list[tuple[str, float]] = []

    async def flaky(event: CompletionEvent) -> None:
        attempts.append((event.id, time.monotonic()))
        if len(attempts) == 1:
            raise RuntimeError("downstream is down")

    member = consumer(redis, keys, "g", types=["ORDERS.IMPORT"], min_idle=0.5)
    async with running(member, flaky):
        # The entry's idle time starts when it is delivered, which is after this and
        # may be before the handler's first call is timed (by a few ms under load).
        appended = time.monotonic()
        [id_] = await append(redis, keys, "ORDERS.IMPORT", 1)
        await until(lambda: len(attempts) == 1)
        await asyncio.sleep(0.05)
        assert await pending(redis, stream, "g") == 1
        await until(lambda: len(attempts) == 2, within=5)
    assert [a[0] for a in attempts] == [id_, id_]
    assert attempts[1][1] - appended >= 0.5, "claimed only after min_idle"
    assert await pending(redis, stream, "g") == 0


async def test_a_handler_over_its_timeout_is_a_failure(redis: Redis, keys: Keys) -> None:
    calls = 0

    async def slow(event: CompletionEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)

    member = consumer(redis, keys, "g", types=["SKUS.IMPORT_CSV"], handler_timeout=0.2)
    async with running(member, slow):
        await append(redis, keys, "SKUS.IMPORT_CSV", 1)
        await until(lambda: calls == 2, within=5)
    assert await pending(redis, keys.completed("SKUS.IMPORT_CSV"), "g") == 0


async def test_poison_goes_to_dead_letters_after_n_deliveries_and_the_rest_flows(
    redis: Redis, keys: Keys
) -> None:
    type_ = "VOUCHERS.IMPORT_CSV"
    [bad] = await append(redis, keys, type_, 1)
    good_ids = await append(redis, keys, type_, 20)
    tries: collections.Counter[str] = collections.Counter()
    done: set[str] = set()

    async def handle(event: CompletionEvent) -> None:
        tries[event.id] += 1
        if event.id == bad:
            raise ValueError("cannot parse the report")
        done.add(event.id)

    member = consumer(redis, keys, "billing", name="c1", types=[type_], max_deliveries=3)
    started = time.monotonic()
    async with running(member, handle):
        await until(lambda: done == set(good_ids), within=2)
        # While the bad entry waits for its next delivery, new events keep flowing.
        later = await append(redis, keys, type_, 10)
        await until(lambda: done == set(good_ids + later), within=2)
        assert tries[bad] < 3 and not await redis.exists(keys.dead_letters())
        await until(lambda: tries[bad] == 3, within=10)
        letters = []
        async with asyncio.timeout(5):
            while not letters:
                letters = await redis.xrange(keys.dead_letters())
    elapsed = time.monotonic() - started
    print(f"poison dead-lettered after 3 deliveries in {elapsed:.2f}s; 30 others flowed")
    [(_, letter)] = letters
    assert letter[b"reason"] == b"poison"
    assert letter[b"group"] == b"billing" and letter[b"consumer"] == b"c1"
    assert letter[b"deliveries"] == b"3"
    assert b"ValueError: cannot parse the report" in letter[b"error"]
    assert b"billing" in letter[b"detail"] and b"ValueError" in letter[b"detail"]
    assert json.loads(letter[b"body"])["id"] == bad
    assert letter[b"stream"] == keys.completed(type_).encode()
    assert tries[bad] == 3
    assert await pending(redis, keys.completed(type_), "billing") == 0
    assert elapsed < 5


async def test_an_undecodable_entry_is_dead_lettered_at_once(redis: Redis, keys: Keys) -> None:
    stream = keys.completed("ORDERS.IMPORT")
    await redis.xadd(stream, {"type": "ORDERS.IMPORT", "event": b'{"type":"NOPE"}'})
    [good] = await append(redis, keys, "ORDERS.IMPORT", 1)
    seen: list[str] = []

    async def handle(event: CompletionEvent) -> None:
        seen.append(event.id)

    async with running(consumer(redis, keys, "g", types=["ORDERS.IMPORT"]), handle):
        await until(lambda: seen == [good])
        async with asyncio.timeout(5):
            while not await redis.xlen(keys.dead_letters()):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    [(_, letter)] = await redis.xrange(keys.dead_letters())
    assert letter[b"reason"] == b"poison"
    assert b"cannot decode" in letter[b"error"]
    assert await pending(redis, stream, "g") == 0


async def test_stop_finishes_handlers_in_flight_and_acks(redis: Redis, keys: Keys) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def handle(event: CompletionEvent) -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.append(event.id)

    member = consumer(redis, keys, "g", types=["ORDERS.IMPORT"], concurrency=5)
    task = asyncio.create_task(member.run(handle))
    await member.wait_ready()
    ids = await append(redis, keys, "ORDERS.IMPORT", 5)
    await asyncio.wait_for(started.wait(), 5)
    member.stop()
    await asyncio.wait_for(task, 5)
    assert sorted(finished) == sorted(ids)
    assert await pending(redis, keys.completed("ORDERS.IMPORT"), "g") == 0
    # It left the group, holding nothing: the group lists live members only.
    assert await redis.xinfo_consumers(keys.completed("ORDERS.IMPORT"), "g") == []


async def test_concurrency_is_bounded(redis: Redis, keys: Keys) -> None:
    running_now = peak = handled = 0

    async def handle(event: CompletionEvent) -> None:
        nonlocal running_now, peak, handled
        running_now += 1
        peak = max(peak, running_now)
        await asyncio.sleep(0.01)
        running_now -= 1
        handled += 1

    await append(redis, keys, "ORDERS.IMPORT", 60)
    await append(redis, keys, "SKUS.IMPORT_CSV", 60)
    member = consumer(redis, keys, "g", types=["ORDERS.IMPORT", "SKUS.IMPORT_CSV"], concurrency=3)
    async with running(member, handle):
        await until(lambda: handled == 120)
    assert peak == 3


async def test_idle_consumer_blocks_instead_of_polling(redis: Redis, keys: Keys) -> None:
    handled_at: list[float] = []

    async def handle(event: CompletionEvent) -> None:
        handled_at.append(time.monotonic())

    # Count the reads this consumer sends (the shared server's stats would count
    # other clients too); the calls still go to the real server.
    reads: list[float] = []
    original = redis.xreadgroup

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(time.monotonic())
        return await original(*args, **kwargs)

    redis.xreadgroup = counted  # type: ignore[method-assign]
    member = consumer(
        redis, keys, "idle", types=["ORDERS.IMPORT"], block=1.0, min_idle=10, claim_interval=5
    )
    async with running(member, handle):
        await asyncio.sleep(0.7)
        arrived = time.monotonic()
        await append(redis, keys, "ORDERS.IMPORT", 1)
        await until(lambda: handled_at)
    # Idle for 0.7 s with a 1 s BLOCK: one read, not a busy loop...
    assert len([t for t in reads if t < arrived]) == 1, reads
    # ...and the blocked read returns as soon as an entry arrives, not when BLOCK ends.
    assert handled_at[0] - arrived < 0.5


@pytest.mark.slow
async def test_ten_thousand_events_through_four_consumers_exactly_once(
    redis: Redis, keys: Keys
) -> None:
    types = ["VOUCHERS.IMPORT", "ORDERS.IMPORT", "CUSTOMERS.BULK_UPDATE", "SKUS.IMPORT_CSV"]
    ids: list[str] = []
    for type_ in types:
        ids += await append(redis, keys, type_, 2500)
    counts: collections.Counter[str] = collections.Counter()
    per_member: collections.Counter[str] = collections.Counter()

    def make(name: str) -> tuple[Consumer, object]:
        async def handle(event: CompletionEvent) -> None:
            counts[event.id] += 1
            per_member[name] += 1

        return consumer(redis, keys, "bulk", name=name, types=types, min_idle=30), handle

    members = [make(f"c{n}") for n in range(4)]
    started = time.monotonic()
    async with (
        running(members[0][0], members[0][1]),  # type: ignore[arg-type]
        running(members[1][0], members[1][1]),  # type: ignore[arg-type]
        running(members[2][0], members[2][1]),  # type: ignore[arg-type]
        running(members[3][0], members[3][1]),  # type: ignore[arg-type]
    ):
        await until(lambda: sum(counts.values()) >= len(ids), within=45)
    elapsed = time.monotonic() - started
    print(f"10,000 events, 4 consumers: {elapsed:.2f}s, per consumer {dict(per_member)}")
    assert len(ids) == 10_000
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}
    assert all(per_member[f"c{n}"] > 0 for n in range(4)), per_member
    for type_ in types:
        assert await pending(redis, keys.completed(type_), "bulk") == 0


@pytest.mark.spawns
async def test_the_example_consumes_until_its_count(
    redis: Redis, keys: Keys, redis_url: str
) -> None:
    ids = await append(redis, keys, "VOUCHERS.IMPORT", 2)
    ids += await append(redis, keys, "CAMPAIGN.VOUCHERS_GENERATE", 1)
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(ROOT / "examples" / "consume.py"),
            "--redis-url",
            redis_url,
            "--prefix",
            keys.prefix,
            "--group",
            "example",
            "--count",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert lines == sorted(
        [f"VOUCHERS.IMPORT {i} DONE: 2 failed (Duplicate resource key)" for i in ids[:2]]
        + [f"CAMPAIGN.VOUCHERS_GENERATE {ids[2]} DONE: 40 done"]
    )


def test_min_idle_must_exceed_the_handler_timeout(redis: Redis) -> None:
    with pytest.raises(ValueError, match="min_idle"):
        Consumer(redis, "g", handler_timeout=10, min_idle=5)
    with pytest.raises(ValueError, match="unknown async action or webhook event type"):
        Consumer(redis, "g", types=["NOT.A_TYPE"])


async def test_block_must_be_shorter_than_the_socket_timeout(redis_url: str) -> None:
    client = Redis.from_url(redis_url, socket_timeout=2)
    try:
        with pytest.raises(ValueError, match="socket_timeout"):
            Consumer(client, "g", block=5)
        Consumer(client, "g", block=1)
    finally:
        await client.aclose()
