"""Consuming webhook events: typed data with the vendor's field names, end to end."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from service import Consumer, StreamEvent, WebhookEvent, decode_event, webhook_data
from service.domain import samples
from service.domain.webhook_samples import envelope, example
from service.streams.keys import Keys
from tests.consumer.test_consumer import FAST, pending
from tests.support.feed import running, until
from tests.support.http import post


def consumer(redis: Redis, keys: Keys, group: str, **options: object) -> Consumer:
    return Consumer(redis, group, prefix=keys.prefix, **(FAST | options))  # type: ignore[arg-type]


async def test_webhook_events_arrive_typed(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    published = envelope("voucher.published")
    order = envelope("customer.order.paid")
    for payload in (published, order):
        assert (await post(http, payload)).status_code == 202
    received: list[StreamEvent] = []

    async def handle(event: StreamEvent) -> None:
        received.append(event)

    member = consumer(redis, keys, "crm", types=["voucher.published", "customer.order.paid"])
    async with running(member, handle):
        await until(lambda: len(received) == 2)
    by_type = {event.type: event for event in received}
    event = by_type["voucher.published"]
    assert isinstance(event, WebhookEvent)
    assert event.id == published["event"]["id"]
    assert event.request_id == published["event"]["group_id"]
    assert event.sendout_id == published["id"]
    assert event.schema_valid
    match event.data:
        case webhook_data.EventVoucherPublishedData(voucher=voucher, customer=customer):
            assert voucher is not None and voucher.code == published["data"]["voucher"]["code"]
            assert customer is not None and customer.id == published["data"]["customer"]["id"]
        case other:
            pytest.fail(f"untyped data: {other!r}")
    paid = by_type["customer.order.paid"]
    assert isinstance(paid, WebhookEvent)
    assert isinstance(paid.data, webhook_data.EventCustomerOrderPaidData)
    assert paid.webhook_type == "Fan-out sample"  # the distribution's own name
    assert await pending(redis, keys.events("voucher.published"), "crm") == 0


async def test_one_group_over_async_actions_and_webhook_events(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    assert (await post(http, samples.sample("VOUCHERS.IMPORT"))).status_code == 202
    assert (await post(http, envelope("voucher.created"))).status_code == 202
    received: list[StreamEvent] = []

    async def handle(event: StreamEvent) -> None:
        received.append(event)

    member = consumer(redis, keys, "audit", types=["VOUCHERS.IMPORT", "voucher.created"])
    async with running(member, handle):
        await until(lambda: len(received) == 2)
    assert sorted(type(e).__name__ for e in received) == [
        "VouchersImportEvent",
        "WebhookEvent",
    ]


async def test_the_vendors_other_spelling_subscribes_to_the_canonical_stream(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    payload = envelope("bus_val_rule.created", example("business_validation_rule.created"))
    assert (await post(http, payload)).status_code == 202
    received: list[StreamEvent] = []

    async def handle(event: StreamEvent) -> None:
        received.append(event)

    member = consumer(redis, keys, "rules", types=["bus_val_rule.created"])
    assert member.streams == (keys.events("business_validation_rule.created"),)
    async with running(member, handle):
        await until(lambda: received)
    [event] = received
    assert event.type == "business_validation_rule.created"
    assert isinstance(event, WebhookEvent)
    assert isinstance(event.data, webhook_data.EventBusValRuleCreatedData)


async def test_drift_arrives_as_the_data_as_published(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    data = example("voucher.published") | {"voucher": ["not", "an", "object"]}
    assert (await post(http, envelope("voucher.published", data))).status_code == 202
    received: list[StreamEvent] = []

    async def handle(event: StreamEvent) -> None:
        received.append(event)

    async with running(consumer(redis, keys, "g", types=["voucher.published"]), handle):
        await until(lambda: received)
    [event] = received
    assert isinstance(event, WebhookEvent)
    assert not event.schema_valid
    assert event.data == data
    assert event.schema_error is not None and "$.data.voucher" in event.schema_error


async def test_decode_event_takes_the_event_field_or_the_whole_entry(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    assert (await post(http, envelope("campaign.created"))).status_code == 202
    [(_, fields)] = await redis.xrange(keys.events("campaign.created"))
    for given in (fields, fields[b"event"], fields[b"event"].decode()):
        event = decode_event(given)
        assert isinstance(event, WebhookEvent)
        assert isinstance(event.data, webhook_data.EventCampaignCreatedData)
    assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
    [(_, fields)] = await redis.xrange(keys.completed("ORDERS.IMPORT"))
    assert type(decode_event(fields)).__name__ == "OrdersImportEvent"


def test_unknown_types_are_refused(redis: Redis) -> None:
    with pytest.raises(ValueError, match="unknown async action or webhook event type"):
        Consumer(redis, "g", types=["voucher.teleported"])
