"""Fault injection with real processes: Redis killed, replies lost, scripts flushed.

The promise under test: a 2xx means the event is in its stream exactly once;
while Redis is in trouble the sender gets a 503 and retries; nothing is lost.
Figures printed here (``-s``) are the ones quoted in RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from service.config import Durability, Settings
from service.domain import actions, samples
from service.http.app import create_app
from service.streams.keys import Keys
from tests.support.http import post, serving
from tests.support.load import Delivery, Tally, make_deliveries, run_load, until
from tests.support.loss import ids_in_streams
from tests.support.servers import CuttingProxy, ValkeyProcess, running_uvicorn

pytestmark = pytest.mark.spawns


def check_exactly_once(deliveries: list[Delivery], seen: collections.Counter[str]) -> None:
    acked = [d for d in deliveries if d.status is not None and 200 <= d.status < 300]
    assert len(acked) == len(deliveries), "every delivery was eventually acknowledged"
    missing = [d.id for d in acked if seen[d.id] == 0]
    doubled = [i for i, n in seen.items() if n > 1]
    assert missing == []
    assert doubled == []
    assert sum(seen.values()) == len(deliveries)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_redis_killed_three_times_under_load_loses_and_doubles_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    # appendfsync always: WAITAOF is answered as soon as the write is on disk, in
    # the same event-loop turn. With everysec it would wait up to a second per call.
    server = ValkeyProcess(tmp_path / "valkey", appendonly=True, appendfsync="always")
    server.start()
    own = dataclasses.replace(
        settings, redis_url=server.url, durability=Durability("aof"), redis_timeout=1.0
    )
    keys = Keys(own.stream_prefix)
    deliveries = make_deliveries(5000, actions.TYPES)
    tally = Tally()
    outages: list[tuple[float, float]] = []  # (seconds down, seconds from restart to a 2xx)

    async def chaos() -> None:
        for threshold in (1000, 2300, 3600):
            await until(lambda: len(tally.acks) >= threshold, 30)  # noqa: B023
            killed = time.monotonic()
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.start)
            restarted = time.monotonic()
            before = len(tally.acks)
            await until(lambda: len(tally.acks) > before, 10)  # noqa: B023
            first_ack = tally.acks[before]
            outages.append((first_ack - killed, first_ack - restarted))

    try:
        async with running_uvicorn(create_app(own)) as base_url:
            started = time.monotonic()
            chaos_task = asyncio.create_task(chaos())
            await run_load(base_url, deliveries, concurrency=32, seconds=70, tally=tally)
            elapsed = time.monotonic() - started
            await asyncio.wait_for(chaos_task, 5)
        seen = await ids_in_streams(server.url, keys, actions.TYPES)
    finally:
        server.stop()

    print(
        f"\nkill -9 x3: {len(deliveries)} events in {elapsed:.1f}s, answers {dict(tally.answers)},"
        f" transport errors {tally.transport_errors},"
        f" outages (down s, restart->2xx s) {[(round(a, 2), round(b, 2)) for a, b in outages]}"
    )
    assert len(outages) == 3
    assert tally.answers[503] > 0, "the kills were seen by the sender"
    assert set(tally.answers) <= {200, 202, 503}
    check_exactly_once(deliveries, seen)


@pytest.mark.parametrize("durability", [Durability("none"), Durability("aof")], ids=str)
async def test_reply_lost_after_the_write_gives_503_then_duplicate(
    settings: Settings, tmp_path: Path, durability: Durability
) -> None:
    server = ValkeyProcess(tmp_path / "valkey", appendonly=True, appendfsync="always")
    server.start()
    keys = Keys(settings.stream_prefix)
    try:
        async with CuttingProxy(server.port) as proxy:
            own = dataclasses.replace(settings, redis_url=proxy.url, durability=durability)
            async with serving(own) as http:
                # A first delivery loads the script, so the cut call is the real one.
                assert (await post(http, samples.sample("VOUCHERS.IMPORT"))).status_code == 202
                body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))
                # The client retries a dropped connection once, so lose both replies.
                proxy.cuts = 2
                first = await post(http, body)
                assert proxy.cut_done == 2
                assert first.status_code == 503
                assert "retry-after" in first.headers

                again = await post(http, body)
                assert again.status_code == 200
                assert again.json()["status"] == "duplicate"
                client = Redis.from_url(server.url)
                try:
                    entries = await client.xrange(keys.completed("VOUCHERS.IMPORT"))
                finally:
                    await client.aclose()
                assert [e.decode() for e, _ in entries][1:] == [again.json()["entry_id"]]
    finally:
        server.stop()


async def test_reply_lost_once_is_recovered_inside_the_request(
    settings: Settings, tmp_path: Path
) -> None:
    # One lost reply is absorbed by the client's single retry: the retried script
    # finds its own write and the sender is told "duplicate" at once, no 503.
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    keys = Keys(settings.stream_prefix)
    try:
        async with CuttingProxy(server.port) as proxy:
            own = dataclasses.replace(settings, redis_url=proxy.url)
            async with serving(own) as http:
                assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
                proxy.cuts = 1
                answer = await post(http, samples.sample("ORDERS.IMPORT"))
                assert proxy.cut_done == 1
                assert answer.status_code == 200
                client = Redis.from_url(server.url)
                try:
                    entries = await client.xrange(keys.completed("ORDERS.IMPORT"))
                finally:
                    await client.aclose()
                assert [e.decode() for e, _ in entries][1:] == [answer.json()["entry_id"]]
    finally:
        server.stop()


@pytest.mark.parametrize("durability", [Durability("none"), Durability("aof")], ids=str)
async def test_script_flush_under_load_costs_no_answer(
    settings: Settings, tmp_path: Path, durability: Durability
) -> None:
    server = ValkeyProcess(tmp_path / "valkey", appendonly=True, appendfsync="always")
    server.start()
    own = dataclasses.replace(settings, redis_url=server.url, durability=durability)
    keys = Keys(own.stream_prefix)
    deliveries = make_deliveries(2000, actions.TYPES)
    tally = Tally()
    flushes = 0

    async def flush_scripts() -> None:
        nonlocal flushes
        admin = Redis.from_url(server.url)
        try:
            for threshold in range(200, 1800, 300):
                await until(lambda: len(tally.acks) >= threshold, 20)  # noqa: B023
                await admin.script_flush()
                flushes += 1
        finally:
            await admin.aclose()

    try:
        async with running_uvicorn(create_app(own)) as base_url:
            flusher = asyncio.create_task(flush_scripts())
            await run_load(base_url, deliveries, concurrency=32, seconds=40, tally=tally)
            await asyncio.wait_for(flusher, 5)
        seen = await ids_in_streams(server.url, keys, actions.TYPES)
    finally:
        server.stop()

    print(f"\nSCRIPT FLUSH x{flushes} ({durability}): answers {dict(tally.answers)}")
    assert flushes == 6
    assert dict(tally.answers) == {202: len(deliveries)}
    check_exactly_once(deliveries, seen)


async def replication_up(replica: Redis) -> bool:
    info = await replica.info("replication")
    return info.get("master_link_status") == "up"


async def test_duplicate_is_not_acknowledged_before_its_first_write_is_replicated(
    settings: Settings, tmp_path: Path
) -> None:
    # No 5 s wait for more replicas before the first full sync.
    master = ValkeyProcess(tmp_path / "master", extra=("--repl-diskless-sync-delay", "0"))
    master.start()
    keys = Keys(settings.stream_prefix)
    try:
        async with CuttingProxy(master.port) as link:
            replica = ValkeyProcess(
                tmp_path / "replica", extra=("--replicaof", "127.0.0.1", str(link.port))
            )
            replica.start()
            replica_client = Redis.from_url(replica.url)
            try:
                for _ in range(200):
                    if await replication_up(replica_client):
                        break
                    await asyncio.sleep(0.05)
                own = dataclasses.replace(
                    settings,
                    redis_url=master.url,
                    durability=Durability("replicas", 1),
                    redis_timeout=1.0,
                )
                # Two receivers (two workers, or two machines) on the same Redis.
                async with serving(own) as first, serving(own) as second:
                    for http in (first, second):
                        assert (
                            await post(http, samples.sample("SKUS.IMPORT_CSV"))
                        ).status_code == 202
                    link.hold()  # the replica stops receiving
                    body = msgspec.json.encode(samples.sample("SKUS.IMPORT_CSV"))
                    assert (await post(first, body)).status_code == 503  # WAIT timed out
                    resent = await post(second, body)
                    on_replica = await replica_client.xlen(keys.completed("SKUS.IMPORT_CSV"))
                    link.release()
                assert on_replica == 2  # the warm-ups only: the replica lacks the entry
                assert resent.status_code == 503, "a 2xx for an entry no replica has"
            finally:
                await replica_client.aclose()
                replica.stop()
    finally:
        master.stop()
