"""The length cap never removes an entry a consumer group still needs (issue 13).

Before: FANOUT_STREAM_MAXLEN=200, a group created before the traffic and not yet
reading, 600 deliveries all answered 202, and the group could read 200 of them.
Now the cap removes only entries every group acknowledged; when the entries a
group still needs fill it, deliveries get 503 + Retry-After until it catches up.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import httpx
import msgspec
from redis.asyncio import Redis

from service.config import Settings
from service.domain import actions, outbound, samples
from service.streams import stats
from service.streams.errors import StreamFull
from service.streams.keys import Keys
from service.streams.publisher import Accepted, Publisher
from tests.http.test_metrics import scrape, value
from tests.support.http import post, serving

TYPE = "VOUCHERS.IMPORT"


async def deliver(http: httpx.AsyncClient, bodies: list[dict[str, object]]) -> list[int]:
    answers: list[int] = []
    for start in range(0, len(bodies), 50):  # 50 at a time: quick, and in order enough
        batch = bodies[start : start + 50]
        answers += [r.status_code for r in await asyncio.gather(*(post(http, b) for b in batch))]
    return answers


async def read_all(redis: Redis, stream: str, group: str, *, ack: bool) -> list[str]:
    """Everything the group can still be given, as action ids (acknowledged if ``ack``)."""
    ids: list[str] = []
    while reply := await redis.xreadgroup(group, "c1", {stream: ">"}, count=500):
        for entry_id, fields in reply[0][1]:
            ids.append(fields[b"id"].decode())
            if ack:
                await redis.xack(stream, group, entry_id)
    return ids


async def test_a_group_that_does_not_read_gets_every_delivery_later(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    stream = keys.completed(TYPE)
    await redis.xgroup_create(stream, "late", id="$", mkstream=True)
    bodies = [samples.sample(TYPE) for _ in range(600)]
    capped = dataclasses.replace(settings, stream_maxlen=200)
    async with serving(capped) as http:
        before = await scrape(http)
        answers = await deliver(http, bodies)
        full = await post(http, samples.sample(TYPE))
        after = await scrape(http)

        # What the lagging group sees at the cap: 200 accepted, the rest refused, not lost.
        assert answers.count(202) == 200
        assert answers.count(503) == 400
        assert full.status_code == 503
        assert full.headers["retry-after"] == "30"
        assert full.json()["error"] == "unavailable"
        assert "is full" in full.json()["detail"]
        refused = value(after, "fanout_deliveries_total", type=TYPE, outcome="stream_full")
        assert (
            refused - value(before, "fanout_deliveries_total", type=TYPE, outcome="stream_full")
            == 401
        )
        assert await redis.xlen(stream) == 200

        # The group catches up, 200 at a time; the sender's retries go in as it does.
        seen = await read_all(redis, stream, "late", ack=True)
        retried = [b for b, a in zip(bodies, answers, strict=True) if a == 503]
        while retried:
            again = await deliver(http, retried)
            assert again.count(202) == min(200, len(retried))
            retried = [b for b, a in zip(retried, again, strict=True) if a == 503]
            seen += await read_all(redis, stream, "late", ack=True)

    assert sorted(seen) == sorted(str(b["id"]) for b in bodies), "every delivery, exactly once"


async def test_pending_entries_hold_the_cap_until_acknowledged(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    stream = keys.completed(TYPE)
    await redis.xgroup_create(stream, "slow", id="$", mkstream=True)
    await redis.xgroup_create(stream, "fast", id="$")
    publisher = Publisher.from_settings(redis, dataclasses.replace(settings, stream_maxlen=20))

    async def publish() -> Accepted | StreamFull:
        action = actions.decode(msgspec.json.encode(samples.sample(TYPE)))
        try:
            outcome = await publisher.publish(outbound.publication(action, datetime.now(UTC)))
        except StreamFull as full:
            return full
        assert isinstance(outcome, Accepted)
        return outcome

    assert all([isinstance(await publish(), Accepted) for _ in range(20)])
    await read_all(redis, stream, "fast", ack=True)  # one group done with all 20
    delivered = await read_all(redis, stream, "slow", ack=False)  # the other holds them
    assert len(delivered) == 20
    assert isinstance(await publish(), StreamFull)
    pending = await redis.xpending_range(stream, "slow", min="-", max="+", count=100)
    await redis.xack(stream, "slow", *(row["message_id"] for row in pending[:5]))
    assert [isinstance(await publish(), Accepted) for _ in range(6)] == [True] * 5 + [False]
    # The five acknowledged by both groups went; the fifteen still pending are there.
    remaining = {e for e, _ in await redis.xrange(stream)}
    assert {row["message_id"] for row in pending[5:]} <= remaining
    assert await redis.xlen(stream) == 20


async def test_without_a_group_the_cap_keeps_recent_history(
    http: httpx.AsyncClient, settings: Settings, redis: Redis, keys: Keys
) -> None:
    capped = dataclasses.replace(settings, stream_maxlen=200)
    bodies = [samples.sample(TYPE) for _ in range(600)]
    async with serving(capped) as client:
        assert set(await deliver(client, bodies)) == {202}
    entries = await redis.xrange(keys.completed(TYPE))
    # Never over the cap; trimmed a few (1 %) at a time, the newest kept.
    assert 198 <= len(entries) <= 200
    assert {f[b"id"].decode() for _, f in entries} <= {str(b["id"]) for b in bodies[-250:]}


async def test_dead_letters_wait_too_when_their_group_lags(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    # A body that cannot be decoded must be kept: when the dead-letter stream is
    # full of letters a group has not read, the sender is asked to retry (503).
    await redis.xgroup_create(keys.dead_letters(), "audit", id="$", mkstream=True)
    async with serving(dataclasses.replace(settings, stream_maxlen=3)) as http:
        answers = [
            (await post(http, b'{"broken": ' + bytes([48 + n]))).status_code for n in range(4)
        ]
    assert answers == [200, 200, 200, 503]
    assert await redis.xlen(keys.dead_letters()) == 3


async def test_lag_counts_only_entries_that_exist(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Redis counts entries removed before the group read them (an operator's XTRIM, or
    # a cap of an older version): 10 added, 3 read, 5 kept -> Redis says lag 7.
    stream = keys.completed(TYPE)
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    for n in range(10):
        await redis.xadd(stream, {"n": n})
    await redis.xreadgroup("g", "c", {stream: ">"}, count=3)
    await redis.xtrim(stream, maxlen=5, approximate=False)
    assert (await redis.xinfo_groups(stream))[0]["lag"] == 7

    [group] = await stats.groups(redis, stream)
    assert group.lag == 5
    data = await stats.collect(redis, keys)
    assert data["streams"][0]["groups"][0]["lag"] == 5
    scraped = await scrape(http)
    assert value(scraped, "fanout_group_lag", stream=stream, group="g") == 5
    assert value(scraped, "fanout_stream_maxlen") == 1_000_000
