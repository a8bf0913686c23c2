"""Webhook events over HTTP: what Voucherify POSTs to a registered URL, against real Redis.

Every documented event type wrapped in the v2024-01-01 envelope as Voucherify
sends it (project-settings types from a project webhook, the others from a
distribution), signed as Voucherify signs it, posted to a real uvicorn.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from service.domain import clock, samples, webhook_data
from service.domain.webhook_samples import TYPES, envelope, example
from service.streams.keys import Keys
from tests.http.test_metrics import scrape, value
from tests.support.http import dead_lettered, post, sent_twice


def fields(entry: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in entry.items()}


async def entries(redis: Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    return [(i.decode(), fields(f)) for i, f in await redis.xrange(stream)]


async def dead_letters(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    return [f for _, f in await entries(redis, keys.dead_letters())]


async def test_every_documented_type_is_accepted_and_lands_in_its_stream(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    valid = 0
    for type_ in TYPES:
        payload = envelope(type_)
        body = msgspec.json.encode(payload)
        response = await post(http, body)
        assert response.status_code == 202, (type_, response.text)
        answer = response.json()
        stream = keys.events(type_)
        assert answer == {
            "status": "accepted",
            "id": payload["event"]["id"],
            "stream": stream,
            "entry_id": answer["entry_id"],
        }
        [(entry_id, entry)] = await entries(redis, stream)
        assert entry_id == answer["entry_id"]
        assert entry["type"] == type_
        assert entry["id"] == payload["event"]["id"]
        assert entry["request_id"] == payload["event"]["group_id"]
        assert entry["sendout_id"] == payload["id"]
        event = json.loads(entry["event"])
        assert event["data"] == payload["data"], type_
        # The data is in the entry byte for byte as it was in the body.
        data = msgspec.json.encode(payload["data"])
        assert entry["event"].encode().endswith(b'"data":' + data + b"}")
        valid += event["schema_valid"]
    assert valid == 71  # see tests/domain/test_webhooks.py for the one that is not
    assert await dead_letters(redis, keys) == []


async def test_entry_fields_and_event_json(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    payload = envelope("customer.order.paid", event_name="Orders to CRM")
    response = await post(http, payload)
    assert response.status_code == 202
    [(_, entry)] = await entries(redis, keys.events("customer.order.paid"))
    assert sorted(entry) == ["event", "id", "project_id", "request_id", "sendout_id", "type"]
    assert entry["project_id"] == payload["project_id"]
    event = json.loads(entry["event"])
    assert event == {
        "schema": 1,
        "type": "customer.order.paid",
        "id": payload["event"]["id"],
        "sendout_id": payload["id"],
        "request_id": payload["event"]["group_id"],
        "project_id": payload["project_id"],
        "created_at": payload["event"]["created_at"],
        "received_at": event["received_at"],
        "source": payload["source"],
        "webhook_type": "Orders to CRM",
        "schema_valid": True,
        "schema_error": None,
        "data": payload["data"],
    }
    assert event["received_at"].endswith("Z")


async def test_retry_is_a_duplicate_with_the_first_entry_id(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    await sent_twice(http, msgspec.json.encode(envelope("voucher.published")))
    assert await redis.xlen(keys.events("voucher.published")) == 1


async def test_pretty_printed_resend_is_a_duplicate(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    payload = envelope("redemption.succeeded")
    await sent_twice(http, msgspec.json.encode(payload), json.dumps(payload, indent=2).encode())
    assert await dead_letters(redis, keys) == []


async def test_same_event_through_a_second_webhook_is_a_duplicate(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Two webhooks of one project: each sendout has its own id and source.
    first = envelope("voucher.published", source_id="wh_first")
    second = envelope(
        "voucher.published",
        first["data"],
        source_id="wh_second",
        event_id=first["event"]["id"],
        group_id=first["event"]["group_id"],
    )
    assert second["id"] != first["id"]
    one = await post(http, first)
    two = await post(http, second)
    assert (one.status_code, two.status_code) == (202, 200)
    assert two.json()["entry_id"] == one.json()["entry_id"]
    [(_, entry)] = await entries(redis, keys.events("voucher.published"))
    assert entry["sendout_id"] == first["id"]


async def test_same_event_id_with_other_data_is_a_conflict_dead_lettered(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    first = envelope("voucher.updated")
    changed = json.loads(json.dumps(first))
    changed["data"]["voucher"]["code"] = "CHANGED"
    one = await post(http, first)
    two = await post(http, changed)
    assert two.status_code == 200
    assert two.json()["entry_id"] == one.json()["entry_id"]
    assert await redis.xlen(keys.events("voucher.updated")) == 1
    [letter] = await dead_letters(redis, keys)
    assert letter["reason"] == "conflict"
    assert json.loads(letter["body"]) == changed


@pytest.mark.parametrize("alias", sorted(webhook_data.ALIASES))
async def test_both_spellings_go_to_one_stream_as_one_event(
    http: httpx.AsyncClient, redis: Redis, keys: Keys, alias: str
) -> None:
    canonical = webhook_data.ALIASES[alias]
    first = envelope(alias, example(canonical))
    second = envelope(
        canonical,
        first["data"],
        event_id=first["event"]["id"],
        group_id=first["event"]["group_id"],
    )
    one = await post(http, first)
    two = await post(http, second)
    assert one.status_code == 202
    assert one.json()["stream"] == keys.events(canonical)
    assert two.status_code == 200
    [(_, entry)] = await entries(redis, keys.events(canonical))
    assert entry["type"] == canonical
    assert json.loads(entry["event"])["schema_valid"] is True
    assert not await redis.exists(keys.events(alias))


async def test_drift_is_accepted_flagged_and_counted(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    before = await scrape(http)
    data = example("voucher.published")
    data["voucher"]["code"] = 12345  # documented as a string
    payload = envelope("voucher.published", data)
    response = await post(http, payload)
    assert response.status_code == 202
    await post(http, payload)  # a duplicate is not counted again
    [(_, entry)] = await entries(redis, keys.events("voucher.published"))
    event = json.loads(entry["event"])
    assert event["schema_valid"] is False
    assert event["schema_error"] == "Expected `str | null`, got `int` - at `$.data.voucher.code`"
    assert event["data"] == data
    after = await scrape(http)
    drift = "fanout_schema_drift_total"
    counted = value(after, drift, type="voucher.published")
    assert counted - value(before, drift, type="voucher.published") == 1
    assert await dead_letters(redis, keys) == []


async def test_send_test_webhook_button_gets_a_2xx(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # What the project settings' "Send test webhook" posts: a well-formed envelope
    # whose type the service may not know (sent now: an old one would be stale).
    payload: dict[str, Any] = {
        "id": "whs_0e16e42bc6e0c65b57",
        "project_id": "proj_5T4Rpl4T1nuM",
        "created_at": clock.now(),
        "type": "webhook.test",
        "data": {"message": "This is a test webhook"},
        "source": {
            "id": "wh_j56Vfy47Vx9YOX7QYD1fzHnc",
            "object": "webhook",
            "target_url": "https://fanout.example.com/webhooks/voucherify",
        },
        "event": {},
    }
    response = await post(http, payload)
    assert response.status_code == 202
    [(_, entry)] = await entries(redis, keys.events("webhook.test"))
    event = json.loads(entry["event"])
    assert event["id"] == payload["id"]  # no event.id: the sendout id stands in
    assert event["schema_valid"] is False
    assert event["schema_error"] == "Unknown event type `webhook.test`: no documented schema"


async def test_unknown_type_from_a_distribution_is_accepted(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    payload = envelope("customer.teleported", {"customer": {"id": "cust_1"}}, distribution=True)
    assert (await post(http, payload)).status_code == 202
    assert await redis.xlen(keys.events("customer.teleported")) == 1


def _without(payload: dict[str, Any], *path: str) -> dict[str, Any]:
    copied = json.loads(json.dumps(payload))
    target = copied
    for name in path[:-1]:
        target = target[name]
    del target[path[-1]]
    return copied


def _with_event(payload: dict[str, Any], **changes: str) -> dict[str, Any]:
    return payload | {"event": payload["event"] | changes}


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (
            lambda: _without(envelope("voucher.published"), "id"),
            "Object missing required field `id`",
        ),
        (
            lambda: _without(envelope("voucher.published"), "type"),
            "Object missing required field `type`",
        ),
        (
            lambda: _without(envelope("customer.order.paid"), "event", "type"),
            "Object missing required field `type` - at `$.event`",
        ),
        (
            lambda: envelope("voucher.published") | {"data": [1, 2]},
            "Expected `object`, got `array` - at `$.data`",
        ),
        (
            lambda: envelope("voucher.published") | {"data": "text"},
            "Expected `object`, got `str` - at `$.data`",
        ),
        (
            lambda: envelope("voucher published", {}, distribution=False),
            "Invalid event type 'voucher published': expected 1 to 200 characters of "
            "[A-Za-z0-9._-] - at `$.type`",
        ),
        (
            lambda: envelope("x" * 201, {}, distribution=True),
            "- at `$.event.type`",
        ),
        # Ids become parts of keys and reach terminals: bounded and printable (issue 13).
        (
            lambda: envelope("voucher.published") | {"id": "wh_\x1b[2Jx"},
            "- at `$.id`",
        ),
        (
            lambda: _with_event(envelope("voucher.published"), id="e" * 257),
            "Expected `str` of length <= 256 - at `$.event.id`",
        ),
        (
            lambda: _with_event(envelope("voucher.published"), group_id="v-\x00"),
            "- at `$.event.group_id`",
        ),
    ],
)
async def test_malformed_envelope_is_dead_lettered_and_answered_200(
    http: httpx.AsyncClient, redis: Redis, keys: Keys, make: Any, detail: str
) -> None:
    # Issue 25: a 422 here was retried 12 times, then Voucherify disabled the webhook.
    body = msgspec.json.encode(make())
    response = await post(http, body)
    await dead_lettered(response, redis, keys, body, "invalid_payload")
    assert response.json()["detail"].endswith(detail)
    again = await post(http, body)  # the same body is dead-lettered once, the same answer
    assert again.json() == response.json()
    await dead_lettered(again, redis, keys, body, "invalid_payload")


async def test_async_action_bodies_are_unchanged(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    action = samples.sample("VOUCHERS.IMPORT")
    response = await post(http, action)
    assert response.status_code == 202
    assert response.json()["stream"] == keys.completed("VOUCHERS.IMPORT")
    unknown = action | {"type": "VOUCHERS.TELEPORT"}
    custom = await post(http, unknown)  # not one of the 22 types: a custom body
    assert custom.status_code == 202 and custom.json()["stream"] == keys.custom()
    assert await redis.xlen(keys.dead_letters()) == 0
