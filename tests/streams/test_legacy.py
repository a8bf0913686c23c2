"""What each publish script reads and writes besides its record: an older version's dedup
keys while any is left (the upgrade window); and the sweep when a new bucket opens, which
the publisher runs after the script call of the delivery that opened it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
from redis.asyncio import Redis

from service.config import Settings
from service.domain import outbound, samples
from service.domain.actions import decode
from service.streams.keys import Keys
from service.streams.publisher import Accepted, Duplicate, Publisher
from service.streams.records import Records

_BODIES: dict[str, bytes] = {}


def _publication(id_: str) -> outbound.Publication:
    """The same delivery each time for one id (a sample's times and request id vary)."""
    if id_ not in _BODIES:
        _BODIES[id_] = msgspec.json.encode(samples.sample("ORDERS.IMPORT", id_=id_))
    return outbound.publication(decode(_BODIES[id_]), datetime.now(UTC))


async def _older_version_record(redis: Redis, keys: Keys, id_: str) -> str:
    """What a version before the bucket records kept for a published completion."""
    publication = _publication(id_)
    entry_id = "1-1"
    seen = keys.seen(publication.type, publication.id, publication.request_id)
    await redis.set(seen, f"{entry_id} {publication.digest}", ex=3600)
    return entry_id


@contextlib.asynccontextmanager
async def _user_without(redis: Redis, keys: Keys, command: str) -> AsyncIterator[Redis]:
    """A client of a Redis user that may do anything on the test's keys but ``command``
    (the user is made here and deleted after)."""
    user = f"no{command}-{keys.prefix}"
    rules = ["on", ">pw", f"~{keys.prefix}:*", "+@all", f"-{command}"]
    await redis.execute_command("ACL", "SETUSER", user, *rules)
    kwargs = redis.connection_pool.connection_kwargs
    client = Redis(host=kwargs["host"], port=kwargs["port"], username=user, password="pw")
    try:
        yield client
    finally:
        await client.aclose()
        await redis.execute_command("ACL", "DELUSER", user)


async def _into_next_bucket(records: Records, number: int) -> None:
    """Until just after bucket ``number`` gave way to the next one."""
    await asyncio.sleep(max(0.0, (number + 1) * records.width - time.time() + 0.05))


async def _at_bucket_start(records: Records) -> int:
    """Just after a bucket (of 1 s) opened: its number."""
    await asyncio.sleep(1 - time.time() % 1 + 0.05)
    return int(time.time() // records.width)


async def test_a_completion_an_older_version_kept_is_a_duplicate_while_its_key_is_left(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    entry_id = await _older_version_record(redis, keys, "aa_legacy_1")
    publisher = Publisher.from_settings(redis, settings)
    watching = asyncio.create_task(publisher.legacy.watch(every=0.01))
    await asyncio.sleep(0.1)  # several looks: a key is left each time
    assert publisher.legacy.open and not watching.done()
    watching.cancel()
    outcome = await publisher.publish(_publication("aa_legacy_1"))
    assert outcome == Duplicate(entry_id)


async def test_a_user_that_may_not_scan_keeps_the_window_open_and_says_why(
    redis: Redis, keys: Keys, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with _user_without(redis, keys, "scan") as client:
        publisher = Publisher.from_settings(client, settings)
        watching = asyncio.create_task(publisher.legacy.watch(every=0.01))
        await asyncio.sleep(0.1)  # several looks, each refused
        assert publisher.legacy.open and not watching.done()
        watching.cancel()
    warnings = [r for r in caplog.records if "give the Redis user +scan" in r.getMessage()]
    assert len(warnings) == 1  # once, not at every look


async def test_with_no_older_key_left_the_window_closes_and_none_is_read(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    publisher = Publisher.from_settings(redis, settings)
    first = await publisher.publish(_publication("aa_new_1"))
    assert isinstance(first, Accepted)
    await publisher.legacy.watch(every=0.01)  # returns: nothing of an older version left
    assert not publisher.legacy.open
    # A key of the older layout appearing now (no older version writes any more) is not read;
    # the records of this version still are.
    await _older_version_record(redis, keys, "aa_new_2")
    assert isinstance(await publisher.publish(_publication("aa_new_2")), Accepted)
    assert await publisher.publish(_publication("aa_new_1")) == Duplicate(first.entry_id)


async def test_the_first_write_into_a_new_bucket_deletes_the_buckets_out_of_the_window(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    # Buckets of 1 s (a 4 s window).
    publisher = Publisher.from_settings(redis, dataclasses.replace(settings, dedup_ttl=4))
    records = publisher.records
    number = await _at_bucket_start(records)
    assert isinstance(await publisher.publish(_publication("aa_sweep_1")), Accepted)
    assert isinstance(await publisher.publish(_publication("aa_sweep_2")), Accepted)
    # A bucket that falls out of the window when the next one opens.
    stale = keys.dedup("ORDERS.IMPORT", number + 1 - records.count)
    await redis.hset(stale, "x", "1")
    await _into_next_bucket(records, number)
    assert isinstance(await publisher.publish(_publication("aa_sweep_4")), Accepted)
    assert not await redis.exists(stale)  # by the publisher, before the delivery's answer
    assert await publisher.publish(_publication("aa_sweep_1")) == Duplicate(
        (await redis.xrange(keys.completed("ORDERS.IMPORT")))[0][0].decode()
    )


async def test_a_dead_letter_into_a_new_bucket_deletes_the_dead_buckets_out_of_the_window(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    # The dead-letter scripts sweep themselves (rare writes: one EXISTS each is no cost).
    publisher = Publisher.from_settings(redis, dataclasses.replace(settings, dedup_ttl=4))
    records = publisher.records
    number = await _at_bucket_start(records)
    stale = keys.dedup("dead", number + 1 - records.count)
    await redis.hset(stale, "x", "1")
    await _into_next_bucket(records, number)
    await publisher.dead_letter("malformed_json", "not JSON", b"{", datetime.now(UTC))
    assert not await redis.exists(stale)  # by the script itself, in the same call


async def test_a_sweep_the_server_refuses_is_logged_once_and_deliveries_go_on(
    redis: Redis, keys: Keys, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with _user_without(redis, keys, "unlink") as client:
        # Buckets of 1 s: every second a new one, and a sweep due.
        publisher = Publisher.from_settings(client, dataclasses.replace(settings, dedup_ttl=4))
        for n in range(6):
            assert isinstance(await publisher.publish(_publication(f"aa_refused_{n}")), Accepted)
            publisher.records.due["ORDERS.IMPORT"] = 1  # due again: another refused sweep
            await asyncio.sleep(0.05)
    warnings = [r for r in caplog.records if r.getMessage() == "old dedup buckets not deleted yet"]
    assert len(warnings) == 1
