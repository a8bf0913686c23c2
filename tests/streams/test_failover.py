"""Readiness means writable; Sentinel failovers are followed without a restart (issue 13).

Before: pointed at a read-only replica every delivery got 503 while /readyz said
200, so a load balancer kept routing to it; and a failover needed a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from service.config import Durability, Settings
from service.consumer import Consumer
from service.domain import samples
from service.domain.completion import CompletionEvent
from service.http.app import create_app
from service.streams import connection, memory
from service.streams.keys import Keys
from service.streams.promise import Promise
from service.streams.publisher import Publisher
from tests.http.test_metrics import scrape, value
from tests.support.feed import append, running, until
from tests.support.http import post, serving
from tests.support.sentinel import ReplicatedSet
from tests.support.servers import ValkeyProcess, has_binary, running_uvicorn

pytestmark = pytest.mark.spawns

BINARIES = [
    "valkey",
    pytest.param("redis", marks=pytest.mark.skipif(not has_binary("redis"), reason="no redis")),
]


@pytest.mark.parametrize("binary", BINARIES)
async def test_readyz_is_503_on_a_replica_and_200_on_the_master(
    settings: Settings, tmp_path: Path, binary: str
) -> None:
    master = ValkeyProcess(tmp_path / "m", binary=binary, appendonly=True)
    replica = ValkeyProcess(tmp_path / "r", binary=binary, appendonly=True, replicaof=master)
    master.start()
    replica.start()
    try:
        replica.wait_synced()
        async with serving(dataclasses.replace(settings, redis_url=replica.url)) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["retry-after"]
            assert "ReadOnlyError" in ready.json()["detail"]
            assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 503
        async with serving(dataclasses.replace(settings, redis_url=master.url)) as http:
            assert (await http.get("/readyz")).status_code == 200
            assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
    finally:
        replica.stop()
        master.stop()


@pytest.mark.parametrize(
    ("setting", "value", "refusal"),
    [("min-replicas-to-write", "1", "NOREPLICAS"), ("maxmemory", "1", "FANOUT_MEMORY_LIMIT=90%")],
)
async def test_readyz_is_503_while_the_server_refuses_writes(
    settings: Settings, tmp_path: Path, setting: str, value: str, refusal: str
) -> None:
    server = ValkeyProcess(tmp_path / "v", appendonly=True)
    server.start()
    admin = Redis.from_url(server.url)
    try:
        async with serving(dataclasses.replace(settings, redis_url=server.url)) as http:
            assert (await http.get("/readyz")).status_code == 200
            await admin.config_set(setting, value)
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert refusal in ready.json()["detail"]
            assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 503
            await admin.config_set(setting, "0")
            assert (await http.get("/readyz")).status_code == 200
    finally:
        await admin.aclose()
        server.stop()


async def _promise(settings: Settings) -> Promise:
    client = connection.from_settings(settings)
    try:
        return await Publisher.from_settings(client, settings).check_durability()
    finally:
        await client.aclose()


async def _deliver_until(http: httpx.AsyncClient, stop: asyncio.Event) -> dict[str, int]:
    """Post one delivery after another until ``stop``; each action id with its final status."""
    answers: dict[str, int] = {}
    while not stop.is_set():
        action = samples.sample("ORDERS.IMPORT")
        answers[action["id"]] = (await post(http, action)).status_code
        await asyncio.sleep(0.005)
    return answers


@pytest.mark.slow
@pytest.mark.parametrize("binary", BINARIES)
@pytest.mark.parametrize("durability", [Durability("auto"), Durability("replicas", 1)], ids=str)
async def test_a_sentinel_failover_is_followed_without_a_restart(
    settings: Settings, tmp_path: Path, binary: str, durability: Durability
) -> None:
    keys = Keys(settings.stream_prefix)
    with ReplicatedSet(tmp_path, binary=binary) as group:
        own = dataclasses.replace(
            settings, redis_url=group.sentinel.url, durability=durability, redis_timeout=1.0
        )
        promise = await _promise(own)
        async with serving(own) as http:
            assert (await http.get("/readyz")).status_code == 200
            stop = asyncio.Event()
            load = asyncio.create_task(_deliver_until(http, stop))
            await asyncio.sleep(0.5)
            new = await asyncio.to_thread(group.sentinel.failover)
            await asyncio.sleep(1.5)
            stop.set()
            answers = await load
            after = [
                (await post(http, samples.sample("ORDERS.IMPORT"))).status_code for _ in range(5)
            ]
            assert (await http.get("/readyz")).status_code == 200
        assert new == group.replica.address
        assert after == [202] * 5, "deliveries go to the new master, no restart"
        client = Redis(host=new[0], port=new[1])
        try:
            stored = {
                f[b"id"].decode() for _, f in await client.xrange(keys.completed("ORDERS.IMPORT"))
            }
        finally:
            await client.aclose()
    acknowledged = {id_ for id_, status in answers.items() if status in (200, 202)}
    assert set(answers.values()) <= {200, 202, 503}
    assert len(acknowledged) > 10
    # WAIT: no 2xx before the replica had it; a demoted master has no replica to
    # confirm, so nothing it takes during the switch is acknowledged. With auto (issue
    # 28) as with replicas:1: before, auto waited for the master's disk only and lost
    # 4-5 of ~200 here (43-48 of ~300 on Redis 7.0).
    assert acknowledged <= stored
    if durability.mode == "auto":
        waits = "WAITAOF 1 0 + WAIT 1" if binary == "valkey" else "WAIT 1"
        assert promise.line.startswith(f"durability auto -> every replica, {waits}: ")
        # Redis 7.0 (no WAITAOF) at appendfsync everysec: a kill -9 without a failover
        # is still at risk, and said.
        assert promise.at_risk == (binary == "redis")


@pytest.mark.slow
async def test_a_consumer_on_sentinel_keeps_consuming_across_a_failover(
    tmp_path: Path, keys: Keys
) -> None:
    handled: list[str] = []

    async def handle(event: CompletionEvent) -> None:
        handled.append(event.id)

    with ReplicatedSet(tmp_path) as group:
        client = connection.connect(group.sentinel.url, cluster=False, timeout=2.0)
        writer = connection.connect(group.sentinel.url, cluster=False, timeout=2.0)
        try:
            member = Consumer(
                client,
                "g",
                prefix=keys.prefix,
                types=["ORDERS.IMPORT"],
                block=0.5,
                handler_timeout=2,
                min_idle=5,
            )
            async with running(member, handle) as task:
                before = await append(writer, keys, "ORDERS.IMPORT", 3)
                await until(lambda: set(before) <= set(handled))
                await asyncio.to_thread(group.sentinel.failover)
                await asyncio.sleep(1)
                assert not task.done()
                later = await _append_retrying(writer, keys)
                await until(lambda: set(later) <= set(handled), within=20)
        finally:
            await client.aclose()
            await writer.aclose()


async def _append_retrying(writer: Redis, keys: Keys) -> list[str]:
    for _ in range(50):
        try:
            return await append(writer, keys, "ORDERS.IMPORT", 3)
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError("could not write to the new master")


async def test_a_replica_sentinel_learns_of_is_waited_for_without_the_next_sample(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sentinel may promote a replica from the moment it learns of it (its INFO of the
    # master, every 10 s), and says so: +slave. A 2xx must wait for that replica from
    # then on, not from the sampler's next round (1 s; 60 s here, so that only the
    # event can explain the count).
    monkeypatch.setattr(memory, "EVERY", 60.0)
    publishers: list[Publisher] = []

    async def hold(publisher: Publisher) -> None:
        publishers.append(publisher)
        await asyncio.Event().wait()

    with ReplicatedSet(tmp_path) as group:
        await asyncio.to_thread(group.sentinel.wait_replicas, 1)
        own = dataclasses.replace(settings, redis_url=group.sentinel.url, redis_timeout=1.0)
        app = create_app(own, background=[hold])
        async with running_uvicorn(app) as url, httpx.AsyncClient(base_url=url) as http:
            assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
            assert await _waited_for(http) == 1
            late = ValkeyProcess(tmp_path / "late", appendonly=True, replicaof=group.master)
            await asyncio.to_thread(late.start)
            try:
                await asyncio.to_thread(group.sentinel.wait_replicas, 2, 15.0)
                for _ in range(50):  # the event's count, at most 5 s after Sentinel knew it
                    if await _waited_for(http) == 2:
                        break
                    await asyncio.sleep(0.1)
                assert await _waited_for(http) == 2
                assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
                # A count still running when the app stops (none more comes online now).
                publishers[0].memory.replica_announced()
                assert publishers[0].memory.pending()
            finally:
                await asyncio.to_thread(late.stop)
        # Nothing of it outlives the app: no count, and no Sentinel follower that a
        # Redis call after the client closed would have started again.
        left = {task.get_coro().__qualname__ for task in asyncio.all_tasks() if not task.done()}
        assert not left & {"MemoryWatch._until", "Follower._run"}, left


async def _waited_for(http: httpx.AsyncClient) -> float:
    """``fanout_durability_replicas`` of the one primary, from ``/metrics``."""
    return value(await scrape(http), "fanout_durability_replicas", primary="primary")
