"""Dedup, conflicts and progress ordering, seen through HTTP answers and stream contents."""

from __future__ import annotations

import json

import httpx
from redis.asyncio import Redis

from service.domain import samples
from service.streams.keys import Keys
from tests.support.http import post


async def test_done_then_failed_is_a_conflict_dead_lettered_once(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    done = samples.sample("VOUCHERS.IMPORT_CSV", status="DONE")
    failed = done | {"status": "FAILED", "operation_status": "FAILED"}
    first = await post(http, done)
    conflict = await post(http, failed)
    conflict_again = await post(http, failed)

    assert first.status_code == 202
    assert conflict.status_code == conflict_again.status_code == 200
    assert conflict.json() == {
        "status": "duplicate",
        "id": done["id"],
        "entry_id": first.json()["entry_id"],
    }
    entries = await redis.xrange(keys.completed("VOUCHERS.IMPORT_CSV"))
    assert len(entries) == 1
    assert entries[0][1][b"status"] == b"DONE"
    letters = await redis.xrange(keys.dead_letters())
    assert len(letters) == 1
    letter = letters[0][1]
    assert letter[b"reason"] == b"conflict"
    assert first.json()["entry_id"].encode() in letter[b"detail"]
    assert json.loads(letter[b"body"])["status"] == "FAILED"


async def test_extra_unknown_fields_are_not_a_conflict(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Content is compared on what was understood: a field the vendor added later
    # does not make a resend look different.
    action = samples.sample("ORDERS.IMPORT")
    first = await post(http, action)
    again = await post(http, action | {"new_vendor_field": {"x": 1}})
    assert again.status_code == 200
    assert again.json()["entry_id"] == first.json()["entry_id"]
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_same_id_with_another_request_id_is_a_new_completion(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    action = samples.sample("PRODUCTS.IMPORT_CSV")
    first = await post(http, action)
    other = await post(http, action | {"request_id": "w-0000000000000000aa"})
    assert first.status_code == other.status_code == 202
    assert await redis.xlen(keys.completed("PRODUCTS.IMPORT_CSV")) == 2


async def test_progress_then_completion(http: httpx.AsyncClient, redis: Redis, keys: Keys) -> None:
    type_ = "CUSTOMERS.BULK_UPDATE"
    enqueued = samples.sample(type_, status="ENQUEUED")
    ident = {"id_": enqueued["id"], "request_id": enqueued["request_id"]}
    steps = [
        enqueued,
        samples.sample(type_, status="IN_PROGRESS", progress=30, **ident),
        samples.sample(type_, status="IN_PROGRESS", progress=30, **ident),  # resent
        samples.sample(type_, status="IN_PROGRESS", progress=80, **ident),
    ]
    answers = [(await post(http, step)).status_code for step in steps]
    assert answers == [202, 202, 200, 202]

    done = await post(http, samples.sample(type_, status="DONE", **ident))
    assert done.status_code == 202
    assert done.json()["stream"] == keys.completed(type_)

    progress = await redis.xrange(keys.progress(type_))
    assert [(e[b"status"], json.loads(e[b"event"])["progress"]) for _, e in progress] == [
        (b"ENQUEUED", 0),
        (b"IN_PROGRESS", 30),
        (b"IN_PROGRESS", 80),
    ]
    assert await redis.xlen(keys.completed(type_)) == 1


async def test_progress_after_completion_is_dropped(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    type_ = "PRODUCTS.METADATA_UPDATE"
    done = samples.sample(type_, status="DONE")
    ident = {"id_": done["id"], "request_id": done["request_id"]}
    accepted = await post(http, done)
    late = await post(http, samples.sample(type_, status="IN_PROGRESS", progress=90, **ident))

    assert late.status_code == 200
    assert late.json() == {
        "status": "duplicate",
        "id": done["id"],
        "entry_id": accepted.json()["entry_id"],
    }
    assert await redis.xlen(keys.progress(type_)) == 0


async def test_progress_event_has_no_result(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    await post(http, samples.sample("VOUCHERS.METADATA_UPDATE", status="ENQUEUED"))
    [(_, entry)] = await redis.xrange(keys.progress("VOUCHERS.METADATA_UPDATE"))
    event = json.loads(entry[b"event"])
    assert event["status"] == "ENQUEUED"
    assert event["result"] is None
    assert event["done_count"] is None


async def test_missing_request_id_is_an_empty_string_in_the_entry(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    action = samples.sample("ORDERS.METADATA_KEY_PURGE")
    del action["request_id"]
    first = await post(http, action)
    again = await post(http, action)
    assert (first.status_code, again.status_code) == (202, 200)
    [(_, entry)] = await redis.xrange(keys.completed("ORDERS.METADATA_KEY_PURGE"))
    assert entry[b"request_id"] == b""
    assert json.loads(entry[b"event"])["request_id"] is None


async def test_no_key_of_the_service_has_a_ttl(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Issue 21: under a volatile-* maxmemory policy the server evicts keys with a TTL
    # first; dedup records that had one were evicted and their resends published twice.
    for type_ in ("VOUCHERS.IMPORT", "ORDERS.IMPORT"):
        await post(http, samples.sample(type_))
        await post(http, samples.sample(type_, status="IN_PROGRESS"))
    await post(http, b"{not json")
    found = [key async for key in redis.scan_iter(match=f"{keys.prefix}:*")]
    assert any(b":dedup:" in key for key in found)
    assert {key: await redis.ttl(key) for key in found} == dict.fromkeys(found, -1)


async def test_ids_that_share_a_separator_are_different_deliveries(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Issue 13: with ":"-joined keys, (aa_col:v-2, x) and (aa_col, v-2:x) shared one
    # dedup key: the second was answered "duplicate" and filed as a conflict.
    type_ = "VOUCHERS.IMPORT"
    first = samples.sample(type_, id_="aa_col:v-2", request_id="x")
    second = samples.sample(type_, id_="aa_col", request_id="v-2:x")
    answers = [await post(http, first), await post(http, second)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json()["entry_id"] != answers[1].json()["entry_id"]
    entries = await redis.xrange(keys.completed(type_))
    assert [(e[b"id"], e[b"request_id"]) for _, e in entries] == [
        (b"aa_col:v-2", b"x"),
        (b"aa_col", b"v-2:x"),
    ]
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_progress_steps_that_share_a_separator_are_different(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    type_ = "CUSTOMERS.BULK_UPDATE"
    steps = [
        samples.sample(type_, status="IN_PROGRESS", progress=5, id_="aa_p:v-1")
        | {"request_id": ""},
        samples.sample(type_, status="IN_PROGRESS", progress=5, id_="aa_p", request_id="v-1:"),
    ]
    assert [(await post(http, step)).status_code for step in steps] == [202, 202]
    assert await redis.xlen(keys.progress(type_)) == 2
