"""Workflows webhooks and the schema-less project types over HTTP, against real Redis.

The Workflows bodies are the two examples of the vendor's Workflows webhook page
(``scripts/vendor/workflow-webhook-examples.json``), signed as Voucherify signs
and posted to a real uvicorn; what they become is read back from the streams,
the gauges, the dashboard's snapshot and the page in a real Chromium.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service import Consumer, StreamEvent, decode_event, metrics, workflow_data
from service.config import Secret, Settings
from service.domain import clock, webhook_samples
from service.domain.event_types import OTHER
from service.domain.webhook_samples import envelope
from service.domain.webhooks import WebhookEvent
from service.streams.keys import Keys
from tests.consumer.test_consumer import FAST
from tests.http.test_metrics import scrape, value
from tests.support.browser import requires_chromium
from tests.support.cli import FANOUT, clean_env
from tests.support.feed import running, until
from tests.support.http import SECRET, post, serving

ROOT = Path(__file__).resolve().parents[2]
VENDOR_EXAMPLES: dict[str, dict[str, Any]] = json.loads(
    (ROOT / "scripts" / "vendor" / "workflow-webhook-examples.json").read_text(encoding="utf-8")
)


def sent_now(envelope: dict[str, Any]) -> dict[str, Any]:
    """The vendor's example as it would be sent today: dated now (the examples are from
    August 2026, older than FANOUT_MAX_AGE allows), all else as written."""
    fresh = copy.deepcopy(envelope)
    fresh["created_at"] = fresh["event"]["created_at"] = clock.now()
    return fresh


EXAMPLES = {type_: sent_now(envelope) for type_, envelope in VENDOR_EXAMPLES.items()}
TOKEN = "dashboard-token-0123456789"
BEARER = {"authorization": f"Bearer {TOKEN}"}


async def test_the_vendors_workflow_examples_are_published_valid_and_typed(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    for type_, payload in EXAMPLES.items():
        response = await post(http, payload)
        assert response.status_code == 202, response.text
        stream = keys.events(type_)
        assert response.json()["stream"] == stream == f"{keys.prefix}:{{{type_}}}:events"
        [(entry_id, fields)] = await redis.xrange(stream)
        assert entry_id.decode() == response.json()["entry_id"]
        assert fields[b"type"].decode() == type_
        assert fields[b"id"].decode() == payload["event"]["id"]
        event = decode_event(fields)
        assert isinstance(event, WebhookEvent)
        assert event.schema_valid and event.schema_error is None
        assert event.source is not None and event.source.object == "workflow"
        assert type(event.data) is workflow_data.workflow_data_type(type_)
        # The data is published exactly as it was sent.
        assert json.loads(fields[b"event"])["data"] == payload["data"]
    transaction = decode_event((await redis.xrange(keys.events("POINTS_EARNED")))[0][1]).data
    assert isinstance(transaction, workflow_data.CardTransactionData)
    assert transaction.transaction is not None
    assert transaction.transaction.member_id == "lmbr_91f6b2e84a37"
    # A resend is a duplicate, as for every webhook event.
    again = await post(http, EXAMPLES["POINTS_EARNED"])
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")


async def test_an_undocumented_workflows_type_is_published_as_drift(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    payload = copy.deepcopy(EXAMPLES["POINTS_EARNED"])
    payload["type"] = payload["event"]["type"] = "POINTS_GIFTED"
    assert (await post(http, payload)).status_code == 202
    [(_, fields)] = await redis.xrange(keys.events("POINTS_GIFTED"))
    event = decode_event(fields)
    assert isinstance(event, WebhookEvent)
    assert not event.schema_valid
    assert (
        event.schema_error == "Unknown Workflows event type `POINTS_GIFTED`: no documented schema"
    )
    assert event.data == payload["data"]


async def test_schemaless_types_have_their_stream_and_gauge_unknown_ones_one_bucket(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    counters = (("fanout_deliveries_total", {"type": OTHER, "outcome": "accepted"}),)
    counters += (("fanout_schema_drift_total", {"type": OTHER}),)
    before = [metrics.REGISTRY.get_sample_value(name, labels) or 0 for name, labels in counters]
    async with serving(settings) as http:
        added = envelope("campaign.vouchers.added", {"campaign": {"id": "camp_1"}})
        assert (await post(http, added)).status_code == 202
        for name in ("sent.by.test.button", "another.new.type"):
            assert (await post(http, envelope(name, {"x": 1}))).status_code == 202
        other = keys.events("another.new.type")
        await redis.xgroup_create(other, "crm-sync", id="0")
        assert (await post(http, {"customer": "Ada"})).status_code == 202  # a custom body
        values = await scrape(http)
    [(_, fields)] = await redis.xrange(keys.events("campaign.vouchers.added"))
    event = decode_event(fields)
    assert isinstance(event, WebhookEvent)
    assert event.schema_valid and event.data == {"campaign": {"id": "camp_1"}}
    schemaless = keys.events("campaign.vouchers.added")
    assert value(values, "fanout_stream_length", stream=schemaless) == 1
    # The streams of event types the service does not know: one label value for all.
    assert value(values, "fanout_stream_length", stream=OTHER) == 2
    assert value(values, "fanout_group_lag", stream=OTHER, group="crm-sync") == 1
    assert value(values, "fanout_stream_length", stream=keys.custom()) == 1
    streams = {dict(labels).get("stream") for name, labels in values if name.startswith("fanout_")}
    assert other not in streams and keys.events("sent.by.test.button") not in streams
    assert value(values, "fanout_schema_drift_total", type="campaign.vouchers.added") == 0
    # The counters' type labels are bounded the same way.
    for (name, labels), earlier in zip(counters, before, strict=True):
        assert value(values, name, **labels) - earlier == 2, name
    types = {dict(labels).get("type") for _, labels in values}
    assert "sent.by.test.button" not in types and "another.new.type" not in types


@pytest.mark.spawns
@requires_chromium
async def test_the_dashboard_shows_workflow_and_schemaless_events(
    settings: Settings, browser: object
) -> None:
    guarded = dataclasses.replace(settings, admin_token=Secret(TOKEN))
    async with serving(guarded) as http:
        earning = EXAMPLES["POINTS_EARNED"]
        assert (await post(http, earning)).status_code == 202
        snapshot = (await http.get("/dashboard/snapshot", headers=BEARER)).json()
        for type_ in ("POINTS_EARNED", "vl.member.created", "customer.confirmed"):
            assert type_ in snapshot["types"]
        [shown] = snapshot["webhook_events"]
        assert (shown["type"], shown["source"], shown["schema_valid"]) == (
            "POINTS_EARNED",
            "workflow",
            True,
        )
        base = str(http.base_url).rstrip("/")
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{base}/dashboard?token={TOKEN}")
        await page.wait_for_selector("#connection.live", timeout=5000)
        row = f"#webhook-events tr[data-id='{earning['event']['id']}']"
        text = await page.inner_text(row)
        assert "POINTS_EARNED" in text and "workflow" in text and "valid" in text
        # Live, through the feed: a schema-less project type and a member activity.
        confirmed = envelope("customer.confirmed", {"customer": {"id": "cust_1"}})
        for payload in (confirmed, EXAMPLES["vl.member.created"]):
            assert (await post(http, payload)).status_code == 202
            row = f"#webhook-events tr[data-id='{payload['event']['id']}']"
            await page.wait_for_selector(row, timeout=3000)
            assert await page.get_attribute(row, "class") != "drift"
        await page.close()


async def test_a_consumer_group_reads_workflow_and_schemaless_events_typed(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    confirmed = envelope("customer.confirmed", {"customer": {"id": "cust_1"}})
    for payload in (*EXAMPLES.values(), confirmed):
        assert (await post(http, payload)).status_code == 202
    received: list[StreamEvent] = []

    async def handle(event: StreamEvent) -> None:
        received.append(event)

    types = ["POINTS_EARNED", "vl.member.created", "customer.confirmed"]
    member = Consumer(redis, "loyalty", types=types, prefix=keys.prefix, **FAST)  # type: ignore[arg-type]
    async with running(member, handle):
        await until(lambda: len(received) == 3)
    data = {event.type: event.data for event in received if isinstance(event, WebhookEvent)}
    match data["POINTS_EARNED"]:
        case workflow_data.CardTransactionData(transaction=transaction):
            assert transaction is not None and transaction.type == "POINTS_EARNED"
        case other:
            pytest.fail(f"untyped data: {other!r}")
    assert isinstance(data["vl.member.created"], workflow_data.MemberActivityData)
    assert data["customer.confirmed"] == {"customer": {"id": "cust_1"}}
    with pytest.raises(ValueError, match="unknown async action or webhook event type"):
        Consumer(redis, "loyalty", types=["vl.member.renamed"], prefix=keys.prefix)


@pytest.mark.spawns
async def test_fanout_send_posts_the_vendors_workflows_examples(
    settings: Settings, redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    async with serving(settings) as http:
        url = f"{str(http.base_url).rstrip('/')}/webhooks/voucherify"
        for type_ in webhook_samples.WORKFLOW_TYPES:
            process = await asyncio.create_subprocess_exec(
                *(FANOUT, "send", "--sample", type_, "--count", "2", "--url", url),
                *("--secret", SECRET),
                cwd=tmp_path,
                env=clean_env(),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            # New ids each time, so both are new events: two entries, both valid.
            assert [line.split(" ", 1)[0] for line in out.decode().splitlines()] == ["202"] * 2
            entries = await redis.xrange(keys.events(type_))
            assert len(entries) == 2
            for _, fields in entries:
                event = decode_event(fields)
                assert isinstance(event, WebhookEvent) and event.schema_valid
                assert type(event.data) is workflow_data.workflow_data_type(type_)
