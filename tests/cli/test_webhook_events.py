"""The CLI with webhook events: send a sample, tail, stats, dlq replay, as an operator would."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import redis
from redis.asyncio import Redis

from service.config import Settings
from service.domain import inbound, outbound, webhooks
from service.domain.webhook_samples import envelope
from service.streams.keys import Keys
from service.streams.publisher import Accepted, Publisher
from tests.support.cli import embedded_url, on_redis, send

pytestmark = pytest.mark.spawns


async def publish(settings: Settings, redis: Redis, type_: str, **options: object) -> str:
    publisher = Publisher.from_settings(redis, settings)
    delivery = webhooks.decode_envelope(msgspec.json.encode(envelope(type_, **options)))  # type: ignore[arg-type]
    outcome = await publisher.publish(outbound.publication(delivery, datetime.now(UTC)))
    assert isinstance(outcome, Accepted)
    await asyncio.sleep(0.003)  # entries of different streams show in publishing order
    return delivery.id


def test_send_samples_of_webhook_event_types(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, folder, _ = served
    streams = {}
    # documented (either spelling), schema-less, a Workflows type the vendor gives no
    # example of, and a custom body: the samples service.testing shares
    types = ("voucher.published", "customer.order.paid", "bus_val_rule.created")
    for type_ in (*types, "campaign.vouchers.added", "vl.program.created", "custom"):
        sent = send(base, folder, "--sample", type_, "--count", "2")
        assert sent.returncode == 0, sent.stderr
        answers = [line.split(" ", 1) for line in sent.stdout.splitlines()]
        assert [status for status, _ in answers] == ["202", "202"], "new ids each"
        streams[type_] = json.loads(answers[0][1])["stream"]
    assert streams == {
        "voucher.published": "voucherify:{voucher.published}:events",
        "customer.order.paid": "voucherify:{customer.order.paid}:events",
        "bus_val_rule.created": "voucherify:{business_validation_rule.created}:events",
        "campaign.vouchers.added": "voucherify:{campaign.vouchers.added}:events",
        "vl.program.created": "voucherify:{vl.program.created}:events",
        "custom": "voucherify:{custom}:events",
    }
    client = redis.Redis.from_url(embedded_url(folder / ".fanout"))
    try:
        [(_, entry), _] = client.xrange(streams["customer.order.paid"])
        event = json.loads(entry[b"event"])
        assert event["source"]["object"] == "distribution"
        assert event["schema_valid"] is True
    finally:
        client.close()
    unknown = send(base, folder, "--sample", "voucher.teleported")
    assert unknown.returncode == 2
    assert "invalid choice: 'voucher.teleported'" in unknown.stderr


async def test_tail_webhook_events(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    published = await publish(settings, redis, "voucher.published")
    rule = await publish(settings, redis, "bus_val_rule.created")
    drift = await publish(settings, redis, "voucher.teleported", data={"x": 1})

    everything = await on_redis(redis_url, keys.prefix, "tail", "--json")
    assert everything.returncode == 0, everything.stderr
    assert [json.loads(line)["id"] for line in everything.stdout.splitlines()] == [
        published,
        rule,
    ], "by default the documented types"

    one = await on_redis(redis_url, keys.prefix, "tail", "--json", "--type", "voucher.published")
    [line] = one.stdout.splitlines()
    [(_, entry)] = await redis.xrange(keys.events("voucher.published"))
    assert line == entry[b"event"].decode(), "byte for byte what was published"

    spelled = await on_redis(
        redis_url, keys.prefix, "tail", "--json", "--type", "bus_val_rule.created"
    )
    assert json.loads(spelled.stdout)["type"] == "business_validation_rule.created"

    table = await on_redis(redis_url, keys.prefix, "tail", "--type", "voucher.teleported")
    assert table.returncode == 0, table.stderr
    _, row = table.stdout.splitlines()
    assert row.split()[1:4] == ["voucher.teleported", "drift", drift]

    bad = await on_redis(redis_url, keys.prefix, "tail", "--type", "voucher published")
    assert bad.returncode == 2
    assert "neither an async action type nor an event type" in bad.stderr


async def test_stats_lists_webhook_event_streams(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    for _ in range(2):
        await publish(settings, redis, "campaign.updated")
    result = await on_redis(redis_url, keys.prefix, "stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    [stream] = data["streams"]
    assert stream["stream"] == keys.events("campaign.updated")
    assert (stream["kind"], stream["type"], stream["length"]) == ("events", "campaign.updated", 2)
    assert data["dedup_records"] == {"campaign.updated": 2}
    table = await on_redis(redis_url, keys.prefix, "stats")
    assert "dedup records held: 2 (campaign.updated 2)" in table.stdout


async def test_dlq_replay_of_an_envelope_an_older_version_refused(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    # Before webhook events were accepted, every envelope was a 422 unknown_type.
    publisher = Publisher.from_settings(redis, settings)
    payload = envelope("voucher.published")
    letter = await publisher.dead_letter(
        "unknown_type",
        "Invalid value 'voucher.published' - at `$.type`",
        msgspec.json.encode(payload),
        datetime.now(UTC),
    )
    result = await on_redis(redis_url, keys.prefix, "dlq", "replay", letter.entry_id, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["outcome"] == "accepted"
    [(_, entry)] = await redis.xrange(keys.events("voucher.published"))
    assert entry[b"id"].decode() == payload["event"]["id"]
    assert await redis.xlen(keys.dead_letters()) == 0

    # A malformed envelope stays dead, under the reason it fails with now.
    broken = payload | {"data": [1]}
    still = await publisher.dead_letter(
        "unknown_type", "older", msgspec.json.encode(broken), datetime.now(UTC)
    )
    again = await on_redis(redis_url, keys.prefix, "dlq", "replay", still.entry_id, "--json")
    assert again.returncode == 1
    outcome = json.loads(again.stdout)
    assert outcome["outcome"] == "dead"
    assert "invalid_payload: Expected `object`, got `array` - at `$.data`" in outcome["detail"]


async def test_tail_shows_custom_bodies(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    publisher = Publisher.from_settings(redis, settings)
    body = inbound.decode(b'{"customer": "Ada"}')
    assert isinstance(
        await publisher.publish(outbound.publication(body, datetime.now(UTC))), Accepted
    )

    everything = await on_redis(redis_url, keys.prefix, "tail", "--json")
    [line] = everything.stdout.splitlines()
    assert json.loads(line)["body"] == {"customer": "Ada"}, "custom bodies are tailed by default"
    table = await on_redis(redis_url, keys.prefix, "tail", "--type", "custom")
    assert table.returncode == 0, table.stderr
    assert "custom" in table.stdout and body.id[:12] in table.stdout
