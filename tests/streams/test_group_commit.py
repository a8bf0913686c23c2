"""Group commit: concurrent deliveries share round trips, each keeps its own answer."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.config import Durability, Settings
from service.domain import actions, outbound, samples
from service.streams import connection
from service.streams.group_commit import pack
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


def test_pack_writes_resp() -> None:
    assert (
        pack(("SET", "k", b"v\r\n", 7))
        == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n7\r\n"
    )
    assert pack(("GET", "é")) == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"
