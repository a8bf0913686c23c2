"""One trace from the POST to the consumer's handler: the SDK's in-memory exporter,
a real uvicorn serving the app, a real Redis (or the embedded Valkey), a real Consumer.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from service.config import Settings
from service.consumer import Consumer
from service.domain import samples
from service.domain.completion import CompletionEvent
from service.domain.entries import StreamEvent
from service.http.app import create_app
from service.streams.keys import Keys
from tests.support.feed import running, until
from tests.support.http import post
from tests.support.servers import ValkeyProcess, running_uvicorn

# The sender's trace: W3C's own example ids.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SENDER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SENDER_SPAN}-01"
FAST = {"handler_timeout": 0.3, "min_idle": 0.5, "claim_interval": 0.1, "block": 0.1}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


@contextlib.asynccontextmanager
async def traced(settings: Settings, provider: TracerProvider) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(dataclasses.replace(settings, tracing=True), tracer_provider=provider)
    async with (
        running_uvicorn(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        yield client


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


async def test_one_post_and_one_consumed_event_are_one_trace(
    settings: Settings,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    redis: Redis,
    keys: Keys,
) -> None:
    action = samples.sample("VOUCHERS.IMPORT")
    async with traced(settings, provider) as http:
        answer = await post(http, action, traceparent=TRACEPARENT)
    assert answer.status_code == 202, answer.text
    stream = keys.completed("VOUCHERS.IMPORT")
    [(entry_id, fields)] = await redis.xrange(stream)
    assert entry_id.decode() == answer.json()["entry_id"]

    app_tracer = provider.get_tracer("the-users-app")
    handled: list[StreamEvent] = []

    async def handle(event: StreamEvent) -> None:
        with app_tracer.start_as_current_span("update the crm"):
            handled.append(event)

    member = Consumer(
        redis,
        "crm",
        types=["VOUCHERS.IMPORT"],
        prefix=keys.prefix,
        tracer_provider=provider,
        **FAST,
    )
    async with running(member, handle):
        await until(lambda: handled)
    [event] = handled
    assert isinstance(event, CompletionEvent) and event.id == action["id"]

    spans = exporter.get_finished_spans()
    delivery = by_name(spans, "POST /webhooks/voucherify")
    process = by_name(spans, f"process {stream}")
    crm = by_name(spans, "update the crm")
    # One trace, the sender's: the delivery is the child of the sender's span, the
    # entry carries the delivery's context, the handling is its child, the handler's
    # own span the handling's child.
    assert len(spans) == 3
    assert {hex_ids(s)[0] for s in spans} == {TRACE_ID}
    assert parent_id(delivery) == SENDER_SPAN and delivery.parent and delivery.parent.is_remote
    assert fields[b"traceparent"].decode().split("-")[1:3] == list(hex_ids(delivery))
    assert parent_id(process) == hex_ids(delivery)[1]
    assert parent_id(crm) == hex_ids(process)[1]
    assert delivery.kind is SpanKind.SERVER and process.kind is SpanKind.CONSUMER
    # The delivery's steps, in order, inside its span.
    assert [e.name for e in delivery.events] == ["verified", "decoded", "published"]
    assert dict(delivery.attributes or {}) | {"client.address": "-"} == {
        "http.request.method": "POST",
        "http.route": "/webhooks/voucherify",
        "client.address": "-",
        "http.response.status_code": 202,
        "fanout.outcome": "accepted",
        "fanout.type": "VOUCHERS.IMPORT",
        "fanout.id": action["id"],
        "fanout.request_id": action["request_id"],
        "messaging.destination.name": stream,
        "fanout.entry_id": entry_id.decode(),
    }
    attributes = dict(process.attributes or {})
    assert attributes.pop("messaging.client.id") == member.name
    assert attributes == {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": stream,
        "messaging.consumer.group.name": "crm",
        "messaging.message.id": entry_id.decode(),
        "fanout.type": "VOUCHERS.IMPORT",
        "fanout.id": action["id"],
        "fanout.deliveries": 1,
        "fanout.outcome": "acked",
    }
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


async def test_each_answer_is_its_outcome_and_no_header_starts_a_trace(
    settings: Settings,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    redis: Redis,
    keys: Keys,
) -> None:
    action = samples.sample("ORDERS.IMPORT")
    async with traced(settings, provider) as http:
        first = await post(http, action)  # no traceparent
        again = await post(http, action, traceparent=TRACEPARENT, tracestate="vendor=abc")
        forged = await post(http, action, secret="not-the-secret", traceparent="00-zz-1-01")
        letter = await post(http, b'{"type": "ORDERS.IMPORT", "id": ')
    assert [r.status_code for r in (first, again, forged, letter)] == [202, 200, 401, 200]
    deliveries = exporter.get_finished_spans()
    assert {s.name for s in deliveries} == {"POST /webhooks/voucherify"}
    outcomes = [(s.attributes or {})["fanout.outcome"] for s in deliveries]
    assert outcomes == ["accepted", "duplicate", "invalid_signature", "dead_lettered"]
    first_span, again_span, forged_span, letter_span = deliveries
    # Without a (valid) header, a new trace; with one, the sender's.
    assert first_span.parent is None and forged_span.parent is None
    assert hex_ids(again_span)[0] == TRACE_ID
    assert again_span.context and again_span.context.trace_state.get("vendor") == "abc"
    assert len({hex_ids(s)[0] for s in deliveries}) == 4

    def steps(span: ReadableSpan) -> list[str]:
        return [e.name for e in span.events]

    # The duplicate's entry is the first one's, which keeps the first trace.
    [(entry_id, fields)] = await redis.xrange(keys.completed("ORDERS.IMPORT"))
    assert fields[b"traceparent"].decode().split("-")[1:3] == list(hex_ids(first_span))
    assert steps(again_span) == ["verified", "decoded", "published"]
    assert (again_span.attributes or {})["fanout.entry_id"] == entry_id.decode()
    # A forged body stops before verified: nothing is decoded or published.
    assert steps(forged_span) == []
    assert (forged_span.attributes or {})["http.response.status_code"] == 401
    assert forged_span.status.status_code is StatusCode.UNSET  # the sender's error, not ours
    # An authentic body that cannot be published: its reason, then its dead letter.
    assert steps(letter_span) == ["verified", "unpublishable", "dead_lettered"]
    assert (letter_span.attributes or {})["fanout.reason"] == "malformed_json"
    [(letter_id, _)] = await redis.xrange(keys.dead_letters())
    assert (letter_span.attributes or {})["fanout.dead_letter"] == letter_id.decode()
    assert (letter_span.attributes or {})["http.response.status_code"] == 200
    assert "fanout.type" not in (letter_span.attributes or {})


async def test_a_failing_handler_is_failed_then_poison_in_the_same_trace(
    settings: Settings,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    redis: Redis,
    keys: Keys,
) -> None:
    async with traced(settings, provider) as http:
        answer = await post(http, samples.sample("SKUS.IMPORT_CSV"), traceparent=TRACEPARENT)
    assert answer.status_code == 202
    runs: list[StreamEvent] = []

    async def handle(event: StreamEvent) -> None:
        runs.append(event)
        raise RuntimeError("the CRM is down")

    member = Consumer(
        redis,
        "crm",
        types=["SKUS.IMPORT_CSV"],
        prefix=keys.prefix,
        max_deliveries=2,
        tracer_provider=provider,
        **FAST,
    )
    stream = keys.completed("SKUS.IMPORT_CSV")
    async with running(member, handle):
        await until(lambda: member.stats.poisoned == 1)
    processes = [s for s in exporter.get_finished_spans() if s.name == f"process {stream}"]
    delivery = by_name(exporter.get_finished_spans(), "POST /webhooks/voucherify")
    assert [(s.attributes or {})["fanout.outcome"] for s in processes] == ["failed", "poison"]
    assert [(s.attributes or {})["fanout.deliveries"] for s in processes] == [1, 2]
    for span in processes:
        assert parent_id(span) == hex_ids(delivery)[1] and hex_ids(span)[0] == TRACE_ID
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "RuntimeError: the CRM is down"


async def test_cloudevents_carry_the_traceparent_attribute(
    settings: Settings, provider: TracerProvider, redis: Redis, keys: Keys
) -> None:
    from cloudevents.core.formats.json import JSONFormat

    with_events = dataclasses.replace(settings, cloudevents=True)
    async with traced(with_events, provider) as http:
        answer = await post(http, samples.sample("VOUCHERS.IMPORT"), traceparent=TRACEPARENT)
    assert answer.status_code == 202
    [(_, fields)] = await redis.xrange(keys.completed("VOUCHERS.IMPORT"))
    event = JSONFormat().read(None, fields[b"data"])
    # The distributed tracing extension: the same context as the entry's field.
    assert event.get_extension("traceparent") == fields[b"traceparent"].decode()
    assert msgspec.json.decode(fields[b"data"])["traceparent"].startswith(f"00-{TRACE_ID}-")


@pytest.mark.spawns
async def test_redis_gone_is_a_503_in_error_on_the_span(
    settings: Settings, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    own = dataclasses.replace(settings, redis_url=server.url, redis_timeout=0.5)
    try:
        async with traced(own, provider) as http:
            server.stop()
            answer = await post(http, samples.sample("ORDERS.IMPORT"), traceparent=TRACEPARENT)
    finally:
        server.stop()
    assert answer.status_code == 503
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["fanout.outcome"] == "unavailable"
    assert (span.attributes or {})["http.response.status_code"] == 503
    assert [e.name for e in span.events] == ["verified", "decoded"]  # never published
