"""The receiver on a real 3-master Redis Cluster (FANOUT_REDIS_CLUSTER=1).

A representative subset of the end-to-end tests, run against the cluster:
accept, duplicate, conflict, progress, dead letters, all 22 types, all 72
webhook event types, and a burst.
No script may touch two slots, so a CROSSSLOT error would show here as a 503.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import time
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoPermissionError

from service.config import Settings
from service.domain import actions, samples, webhook_samples
from service.http.app import create_app
from service.streams.keys import Keys
from tests.support.acl import service_acl
from tests.support.http import post, serving
from tests.support.load import make_deliveries, run_load
from tests.support.servers import running_uvicorn

pytestmark = pytest.mark.spawns


@pytest.fixture
def cluster_settings(settings: Settings, redis_cluster_url: str) -> Settings:
    return dataclasses.replace(settings, redis_url=redis_cluster_url, redis_cluster=True)


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def http(cluster_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(cluster_settings) as client:
        yield client


def test_settings_from_the_environment_choose_the_cluster_client(redis_cluster_url: str) -> None:
    settings = Settings.from_env(
        {"FANOUT_REDIS_URL": redis_cluster_url, "FANOUT_REDIS_CLUSTER": "1"}
    )
    assert settings.redis_cluster


def test_each_types_keys_share_one_slot_and_types_spread_over_the_masters(keys: Keys) -> None:
    slots = {}
    for type_ in actions.TYPES:
        names = [
            keys.completed(type_),
            keys.progress(type_),
            keys.seen(type_, "aa_1", "v-1"),
            keys.done(type_, "aa_1"),
            keys.progress_seen(type_, "aa_1", "v-1", "IN_PROGRESS", 40),
        ]
        type_slots = {key_slot(name.encode()) for name in names}
        assert len(type_slots) == 1, type_
        slots[type_] = type_slots.pop()
    dead = {key_slot(k.encode()) for k in (keys.dead_letters(), keys.dead_seen("ab" * 32))}
    assert len(dead) == 1
    # With three equal ranges of slots, the 22 types land on every master.
    masters = {slot * 3 // 16384 for slot in slots.values()}
    assert masters == {0, 1, 2}


async def test_every_type_is_accepted_into_its_stream(
    http: httpx.AsyncClient, cluster: RedisCluster, keys: Keys
) -> None:
    for type_ in actions.TYPES:
        for status in ("DONE", "FAILED"):
            action = samples.sample(type_, status=status)
            response = await post(http, action)
            assert response.status_code == 202, (type_, response.text)
            assert response.json()["stream"] == keys.completed(type_)
    for type_ in actions.TYPES:
        entries = await cluster.xrange(keys.completed(type_))
        assert [f[b"status"] for _, f in entries] == [b"DONE", b"FAILED"]
        assert msgspec.json.decode(entries[0][1][b"event"])["type"] == type_


async def test_every_webhook_event_type_is_accepted_and_deduplicated(
    http: httpx.AsyncClient, cluster: RedisCluster, keys: Keys
) -> None:
    for type_ in webhook_samples.TYPES:
        payload = webhook_samples.envelope(type_)
        response = await post(http, payload)
        assert response.status_code == 202, (type_, response.text)
        assert response.json()["stream"] == keys.events(type_)
        again = await post(http, payload | {"id": "whs_second_webhook"})
        assert again.status_code == 200, (type_, again.text)
    for type_ in webhook_samples.TYPES:
        [(_, entry)] = await cluster.xrange(keys.events(type_))
        assert entry[b"type"].decode() == type_
    assert key_slot(keys.events("a.b").encode()) == key_slot(
        keys.event_seen("a.b", "evt_1", "v-1").encode()
    )


async def test_duplicate_and_conflict(
    http: httpx.AsyncClient, cluster: RedisCluster, keys: Keys
) -> None:
    action = samples.sample("VOUCHERS.IMPORT")
    first = await post(http, action)
    again = await post(http, action)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["entry_id"] == first.json()["entry_id"]

    conflicting = {**action, "status": "FAILED"}
    conflict = await post(http, conflicting)
    assert conflict.status_code == 200
    assert conflict.json()["entry_id"] == first.json()["entry_id"]
    assert await cluster.xlen(keys.completed("VOUCHERS.IMPORT")) == 1
    letters = await cluster.xrange(keys.dead_letters())
    assert [f[b"reason"] for _, f in letters] == [b"conflict"]


async def test_progress_then_completion_then_stale_progress(
    http: httpx.AsyncClient, cluster: RedisCluster, keys: Keys
) -> None:
    id_, request_id = "aa_cluster_progress", "v-cluster"
    for status, progress in (("ENQUEUED", 0), ("IN_PROGRESS", 40), ("IN_PROGRESS", 40)):
        action = samples.sample(
            "ORDERS.IMPORT", status=status, id_=id_, request_id=request_id, progress=progress
        )
        await post(http, action)
    done = await post(
        http, samples.sample("ORDERS.IMPORT", id_=id_, request_id=request_id, status="DONE")
    )
    late = await post(
        http,
        samples.sample(
            "ORDERS.IMPORT", status="IN_PROGRESS", id_=id_, request_id=request_id, progress=90
        ),
    )
    assert done.status_code == 202
    assert late.status_code == 200
    assert late.json()["entry_id"] == done.json()["entry_id"]
    progress = await cluster.xrange(keys.progress("ORDERS.IMPORT"))
    assert [(f[b"status"], f[b"id"]) for _, f in progress] == [
        (b"ENQUEUED", id_.encode()),
        (b"IN_PROGRESS", id_.encode()),
    ]


async def test_dead_letters(http: httpx.AsyncClient, cluster: RedisCluster, keys: Keys) -> None:
    malformed = await post(http, b"{nope")
    invalid = await post(http, b'{"id":"aa_1","type":"ORDERS.IMPORT","status":"LATE"}')
    again = await post(http, b"{nope")
    assert (malformed.status_code, invalid.status_code, again.status_code) == (200, 200, 200)
    assert malformed.json() == again.json()
    assert [a.json()["status"] for a in (malformed, invalid)] == ["dead_lettered"] * 2
    letters = await cluster.xrange(keys.dead_letters())
    assert [f[b"reason"] for _, f in letters] == [b"malformed_json", b"invalid_payload"]
    custom = await post(http, b'{"id":"aa_1","type":"LOYALTIES.X","status":"DONE"}')
    assert custom.json()["stream"] == keys.custom()  # its own slot, on a cluster too
    assert await cluster.xlen(keys.custom()) == 1


async def test_concurrent_identical_deliveries_give_one_entry(
    http: httpx.AsyncClient, cluster: RedisCluster, keys: Keys
) -> None:
    body = msgspec.json.encode(samples.sample("PRODUCTS.BULK_UPDATE"))
    answers = await asyncio.gather(*(post(http, body) for _ in range(200)))
    assert collections.Counter(a.status_code for a in answers) == {202: 1, 200: 199}
    assert await cluster.xlen(keys.completed("PRODUCTS.BULK_UPDATE")) == 1


@pytest.mark.slow
async def test_load_over_all_types_lands_exactly_once(
    cluster_settings: Settings, cluster: RedisCluster, keys: Keys
) -> None:
    deliveries = make_deliveries(3000, actions.TYPES)
    async with running_uvicorn(create_app(cluster_settings)) as base_url:
        started = time.monotonic()
        tally = await run_load(base_url, deliveries, concurrency=32, seconds=40)
        elapsed = time.monotonic() - started
    print(f"\ncluster: {len(deliveries)} events in {elapsed:.1f}s, {dict(tally.answers)}")
    assert dict(tally.answers) == {202: len(deliveries)}
    seen: collections.Counter[str] = collections.Counter()
    for type_ in actions.TYPES:
        for _, fields in await cluster.xrange(keys.completed(type_)):
            seen[fields[b"id"].decode()] += 1
    assert seen == collections.Counter(d.id for d in deliveries)


async def test_under_the_acl_user_with_cluster_rules(
    cluster_settings: Settings, cluster: RedisCluster, keys: Keys
) -> None:
    if os.environ.get("FANOUT_TEST_REDIS_CLUSTER_URL"):
        pytest.skip("does not add users to an external cluster")
    user = f"fanout-{keys.prefix}"
    rules = service_acl(keys.prefix, "pw", cluster=True)
    await cluster.execute_command(
        "ACL", "SETUSER", user, *rules, target_nodes=RedisCluster.ALL_NODES
    )
    assert cluster_settings.redis_url is not None
    address = cluster_settings.redis_url.split("//", 1)[1]
    url = f"redis://{user}:pw@{address}"
    own = dataclasses.replace(cluster_settings, redis_url=url)
    async with serving(own) as http:
        action = samples.sample("CUSTOMERS.IMPORT_CSV")
        assert (await post(http, action)).status_code == 202
        assert (await post(http, action)).status_code == 200
        assert (await post(http, b"{nope")).json()["status"] == "dead_lettered"
    client = RedisCluster.from_url(url)
    try:
        with pytest.raises(NoPermissionError):
            await client.execute_command("FLUSHALL", target_nodes=RedisCluster.ALL_NODES)
        with pytest.raises(NoPermissionError):
            await client.get("other:key")
    finally:
        await client.aclose()
    assert await cluster.xlen(keys.completed("CUSTOMERS.IMPORT_CSV")) == 1
