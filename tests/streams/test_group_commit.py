"""Group commit: concurrent deliveries share round trips, each keeps its own answer."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from service.config import Durability, Settings
from service.domain import actions, outbound, samples
from service.streams import connection
from service.streams.group_commit import EARLY_BATCH, pack
from service.streams.publisher import Accepted, Duplicate, Publisher
from tests.support.servers import ValkeyProcess

pytestmark = pytest.mark.spawns


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path / "valkey", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def stats(client: Redis) -> dict[str, int]:
    info = await client.info("all")
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in info.items()
        if name.startswith("cmdstat_")
    }
    return calls | {"reads": int(info["total_reads_processed"])}


def some_actions(count: int) -> list[outbound.Publication]:
    """The publications of ``count`` sample actions of every type, as the receiver makes them."""
    import msgspec

    now = datetime.now(UTC)
    return [
        outbound.publication(
            actions.decode(msgspec.json.encode(samples.sample(actions.TYPES[n % 22]))), now
        )
        for n in range(count)
    ]


async def test_concurrent_publishes_share_round_trips(
    own_server: ValkeyProcess, settings: Settings
) -> None:
    own = dataclasses.replace(settings, redis_url=own_server.url)
    client = connection.from_settings(own)
    probe = Redis.from_url(own_server.url)
    try:
        publisher = Publisher.from_settings(client, own)
        batch = some_actions(200)
        await publisher.publish(batch[0])  # connects and loads the scripts
        # Each type's first write of this process also deletes its buckets that left the
        # window (one UNLINK per type, after its script): done here, not counted.
        for type_ in actions.TYPES:
            publisher.records.buckets(type_)
        await publisher.records.sweep(client)
        await probe.config_resetstat()
        outcomes = await asyncio.gather(*(publisher.publish(a) for a in batch))
        after = await stats(probe)
    finally:
        await client.aclose()
        await probe.aclose()
    assert isinstance(outcomes[0], Duplicate)
    accepted = [o for o in outcomes[1:] if isinstance(o, Accepted)]
    assert len({(o.stream, o.entry_id) for o in accepted}) == 199
    assert after["evalsha"] == 200
    # 200 script calls arrived in a handful of socket reads, not 200.
    assert after["reads"] <= 20, after


async def test_durability_waits_once_per_batch(
    own_server: ValkeyProcess, settings: Settings
) -> None:
    own = dataclasses.replace(settings, redis_url=own_server.url, durability=Durability("aof"))
    client = connection.from_settings(own)
    probe = Redis.from_url(own_server.url)
    try:
        publisher = Publisher.from_settings(client, own)
        await publisher.check_durability()
        await probe.config_resetstat()
        outcomes = await asyncio.gather(*(publisher.publish(a) for a in some_actions(100)))
        after = await stats(probe)
    finally:
        await client.aclose()
        await probe.aclose()
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert 1 <= after["waitaof"] <= 10, after


async def test_flushed_script_cache_is_reloaded_without_errors(
    own_server: ValkeyProcess, settings: Settings
) -> None:
    own = dataclasses.replace(settings, redis_url=own_server.url)
    client = connection.from_settings(own)
    probe = Redis.from_url(own_server.url)
    try:
        publisher = Publisher.from_settings(client, own)
        first = some_actions(50)
        assert all(
            isinstance(o, Accepted)
            for o in await asyncio.gather(*(publisher.publish(a) for a in first))
        )
        await probe.script_flush()
        again = await asyncio.gather(*(publisher.publish(a) for a in some_actions(50)))
        repeat = await asyncio.gather(*(publisher.publish(a) for a in first))
    finally:
        await client.aclose()
        await probe.aclose()
    assert all(isinstance(o, Accepted) for o in again)
    assert all(isinstance(o, Duplicate) for o in repeat)


async def test_a_burst_goes_out_before_its_loop_turn_ends(
    own_server: ValkeyProcess, settings: Settings
) -> None:
    """Deliveries handled in one loop turn (a burst: every connection answered at once
    sends its next request) go out ``EARLY_BATCH`` at a time while the turn goes on, on
    the connection the lane kept open: the server runs the first scripts while the
    receiver still works on the rest, instead of after the whole burst."""
    own = dataclasses.replace(settings, redis_url=own_server.url)
    client = connection.from_settings(own)
    probe = redis.Redis.from_url(own_server.url)  # blocking: it asks within the turn
    burst = some_actions(EARLY_BATCH * 3)
    seen_in_turn: list[int] = []

    async def ask_the_server() -> None:
        # Runs in the same loop turn as the burst's tasks, after them: nothing else of
        # this loop runs until it returns, so the server saw only what was written early.
        for _ in range(500):  # up to 5 s for the server to run 8 scripts, on a loaded machine
            calls = int(probe.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
            if calls >= EARLY_BATCH:
                break
            time.sleep(0.01)  # noqa: ASYNC251 - holding the loop is the point
        seen_in_turn.append(calls)

    try:
        publisher = Publisher.from_settings(client, own)
        await publisher.publish(burst[0])  # connects and loads the scripts; the lane keeps it
        probe.config_resetstat()
        tasks = [asyncio.create_task(publisher.publish(a)) for a in burst[1:]]
        asking = asyncio.create_task(ask_the_server())
        outcomes = await asyncio.gather(*tasks)
        await asking
    finally:
        await client.aclose()
        probe.close()
    assert all(isinstance(o, Accepted) for o in outcomes)
    # One batch went out within the turn (the lane kept one connection); the rest at its end.
    assert seen_in_turn == [EARLY_BATCH]


def test_pack_writes_resp() -> None:
    assert (
        pack(("SET", "k", b"v\r\n", 7))
        == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n7\r\n"
    )
    assert pack(("GET", "é")) == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"
