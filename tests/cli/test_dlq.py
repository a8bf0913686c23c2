"""``fanout dlq`` as the installed console script, on real Redis: list, show, and replay of
letters dead-lettered by the receiver or given up on by a consumer."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import msgspec
import pytest
from redis.asyncio import Redis

from service.config import Settings
from service.consumer import Consumer
from service.domain import actions, samples
from service.domain.entries import StreamEvent
from service.streams.keys import Keys
from service.streams.publisher import Publisher
from tests.cli.test_operator import publish
from tests.support.cli import clean_env, command, on_redis
from tests.support.feed import append, append_webhook_events, running, until

pytestmark = pytest.mark.spawns


async def test_dlq_list_and_show(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    publisher = Publisher.from_settings(redis, settings)
    body = b'{"id":"aa_x","type":"NEW.TYPE","status":"DONE"}'
    letter = await publisher.dead_letter(
        "unknown_type", "Invalid value 'NEW.TYPE' - at `$.type`", body, datetime.now(UTC)
    )

    listed = await on_redis(redis_url, keys.prefix, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [item] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert item["entry_id"] == letter.entry_id and item["reason"] == "unknown_type"
    table = await on_redis(redis_url, keys.prefix, "dlq", "list")
    assert letter.entry_id in table.stdout and "1 dead letters in all" in table.stdout

    shown = await on_redis(redis_url, keys.prefix, "dlq", "show", letter.entry_id)
    assert shown.returncode == 0
    assert f"entry_id:     {letter.entry_id}" in shown.stdout
    assert '"type": "NEW.TYPE"' in shown.stdout, "the body, pretty-printed"
    missing = await on_redis(redis_url, keys.prefix, "dlq", "show", "1-0")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == "fanout: no dead letter with id 1-0"
    bad = await on_redis(redis_url, keys.prefix, "dlq", "show", "yesterday")
    assert bad.returncode == 2 and "not a stream entry id" in bad.stderr


async def test_dlq_replay_publishes_removes_or_keeps_with_the_new_reason(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    publisher = Publisher.from_settings(redis, settings)
    now = datetime.now(UTC)
    # Dead-lettered by an older version; decodes now.
    fixed = samples.sample("VOUCHERS.IMPORT")
    fixable = await publisher.dead_letter(
        "unknown_type", "older version", msgspec.json.encode(fixed), now
    )
    # Already published meanwhile: a duplicate, removed too.
    dup_id = await publish(settings, redis, "ORDERS.IMPORT")
    [(_, entry)] = await redis.xrange(keys.completed("ORDERS.IMPORT"))
    dup_body = json.loads(entry[b"event"])
    dup = await publisher.dead_letter("unknown_type", "older", json.dumps(dup_body).encode(), now)
    # Still broken, under another reason than the recorded one.
    broken = await publisher.dead_letter("conflict", "stale reason", b'{"id": 1', now)

    result = await on_redis(redis_url, keys.prefix, "dlq", "replay", "--all", "--json")
    assert result.returncode == 1, "one letter is still dead"
    outcomes = {o["letter"]: o for o in map(json.loads, result.stdout.splitlines())}
    assert outcomes[fixable.entry_id]["outcome"] == "accepted"
    assert outcomes[dup.entry_id]["outcome"] == "duplicate"
    assert outcomes[broken.entry_id]["outcome"] == "dead"
    assert "malformed_json" in outcomes[broken.entry_id]["detail"]

    [(_, published)] = await redis.xrange(keys.completed("VOUCHERS.IMPORT"))
    assert json.loads(published[b"event"])["id"] == fixed["id"]
    assert dup_id == dup_body["id"]
    [(kept_id, kept)] = await redis.xrange(keys.dead_letters())
    assert kept[b"reason"] == b"malformed_json" and kept[b"body"] == b'{"id": 1'
    assert kept_id.decode() != broken.entry_id
    # The same body is still dead-lettered once: its dedup key points at the kept letter.
    again = await publisher.dead_letter("malformed_json", "x", b'{"id": 1', now)
    assert again.new is False and again.entry_id == kept_id.decode()

    table = await on_redis(redis_url, keys.prefix, "dlq", "replay", kept_id.decode())
    assert table.returncode == 1
    assert "replayed 0 of 1; 1 still dead or missing" in table.stdout


@pytest.mark.parametrize("type_", ["ORDERS.IMPORT", "customer.created"])
async def test_dlq_replay_of_a_poison_letter_delivers_it_again(
    redis: Redis, keys: Keys, redis_url: str, type_: str
) -> None:
    # An async action's completion event, or a webhook event: both go back to their stream.
    if type_ in actions.BY_TYPE:
        [bad] = await append(redis, keys, type_, 1)
    else:
        [bad] = await append_webhook_events(redis, keys, type_, 1)
    fixed = False
    handled: list[str] = []

    async def handle(event: StreamEvent) -> None:
        if not fixed:
            raise RuntimeError("bug")
        handled.append(event.id)

    member = Consumer(
        redis,
        "g",
        prefix=keys.prefix,
        types=[type_],
        max_deliveries=1,
        handler_timeout=0.3,
        min_idle=0.5,
        block=0.1,
    )
    async with running(member, handle):
        async with asyncio.timeout(5):
            while not await redis.xlen(keys.dead_letters()):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        fixed = True
        result = await on_redis(redis_url, keys.prefix, "dlq", "replay", "--all")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "requeued" in result.stdout
        await until(lambda: handled == [bad])
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_many_letters_replay_with_flag_url(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    publisher = Publisher.from_settings(redis, settings)
    now = datetime.now(UTC)
    for _ in range(30):
        body = msgspec.json.encode(samples.sample("SKUS.IMPORT_CSV"))
        await publisher.dead_letter("unknown_type", "older version", body, now)
    result = await command(
        clean_env(),
        "dlq",
        "replay",
        "--all",
        "--redis-url",
        redis_url,
        "--stream-prefix",
        keys.prefix,
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 30 of 30" in result.stdout
    assert await redis.xlen(keys.completed("SKUS.IMPORT_CSV")) == 30
    assert await redis.xlen(keys.dead_letters()) == 0
