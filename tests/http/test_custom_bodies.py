"""Custom bodies (a distribution's Payload Designer payload): their own stream, end to end.

Signed JSON that is neither an envelope nor an async action was a 422
``unknown_type`` (issue 25): retried 12 times, then the distribution paused.
"""

from __future__ import annotations

import json

import httpx
from redis.asyncio import Redis

from service import Consumer, CustomEvent, StreamEvent
from service.streams.keys import Keys
from tests.consumer.test_consumer import FAST
from tests.support.feed import running, until
from tests.support.http import post

DESIGNED = {"customer": {"name": "Ada", "email": "ada@example.com"}, "code": "SUMMER-1"}


async def test_a_custom_body_is_published_once_to_its_own_stream(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    body = json.dumps(DESIGNED, indent=2).encode()
    first = await post(http, body)
    compact = await post(http, json.dumps(DESIGNED, separators=(",", ":")).encode())

    assert first.status_code == 202
    answer = first.json()
    assert answer["status"] == "accepted"
    assert answer["stream"] == keys.custom() == f"{keys.prefix}:{{custom}}:events"
    # The same JSON values spelled otherwise: a duplicate of the first entry.
    assert compact.status_code == 200
    assert compact.json() == {
        "status": "duplicate",
        "id": answer["id"],
        "entry_id": answer["entry_id"],
    }
    [(entry_id, fields)] = await redis.xrange(keys.custom())
    assert entry_id.decode() == answer["entry_id"]
    assert {k: v for k, v in fields.items() if k != b"event"} == {
        b"type": b"custom",
        b"id": answer["id"].encode(),
        b"request_id": b"",
    }
    event = json.loads(fields[b"event"])
    assert (event["type"], event["id"], event["body"]) == ("custom", answer["id"], DESIGNED)
    assert fields[b"event"].endswith(b'"body":' + body + b"}"), "the body as received"
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_a_json_array_is_a_custom_body_too(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Issue 25 measured it as a 422: the Payload Designer's text is the user's own.
    response = await post(http, b"[1, 2, 3]")
    assert response.status_code == 202
    assert response.json()["stream"] == keys.custom()
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_a_consumer_reads_custom_bodies_typed(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    for payload in (DESIGNED, [1, 2, 3]):
        assert (await post(http, payload)).status_code == 202
    received: list[StreamEvent] = []

    async def handle(event: StreamEvent) -> None:
        received.append(event)

    member = Consumer(redis, "crm", prefix=keys.prefix, types=["custom"], **FAST)  # type: ignore[arg-type]
    async with running(member, handle):
        await until(lambda: len(received) == 2)
    assert all(isinstance(event, CustomEvent) for event in received)
    assert [event.body for event in received if isinstance(event, CustomEvent)] == [
        DESIGNED,
        [1, 2, 3],
    ]
