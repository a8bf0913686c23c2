"""Metrics and logs seen as an operator sees them: a scrape, and log lines."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from service.config import Settings
from service.domain import samples
from service.http import signature
from service.logs import JsonFormatter
from service.streams.keys import Keys
from tests.support.http import SECRET, post, serving
from tests.support.servers import ValkeyProcess


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return float(values.get((name, tuple(sorted(labels.items()))), 0.0))


async def test_counters_and_histograms_move_with_deliveries(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    before = await scrape(http)
    done = samples.sample("CUSTOMERS.IMPORT_CSV", status="FAILED")  # 2 failed records
    assert (await post(http, done)).status_code == 202
    assert (await post(http, done)).status_code == 200
    assert (await post(http, done, secret="wrong")).status_code == 401
    bad = samples.sample("CUSTOMERS.IMPORT_CSV") | {"progress": "half"}
    assert (await post(http, bad)).json()["status"] == "dead_lettered"
    after = await scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    type_ = "CUSTOMERS.IMPORT_CSV"
    assert delta("fanout_deliveries_total", type=type_, outcome="accepted") == 1
    assert delta("fanout_deliveries_total", type=type_, outcome="duplicate") == 1
    # Not authenticated: the body is not looked at. Invalid, but of a known type: that type.
    assert delta("fanout_deliveries_total", type="none", outcome="invalid_signature") == 1
    assert delta("fanout_deliveries_total", type=type_, outcome="dead_lettered") == 1
    assert delta("fanout_dead_letters_total", reason="invalid_payload") == 1
    assert delta("fanout_completions_total", type=type_, status="FAILED") == 1
    assert delta("fanout_failed_records_total", type=type_) == 2
    assert delta("fanout_dead_letters_total", reason="invalid_payload") == 1
    assert delta("fanout_request_duration_seconds_count") == 4
    assert delta("fanout_batch_size_count") >= 2
    assert delta("fanout_redis_round_trip_seconds_count") >= 2


async def test_stream_lengths_group_lag_and_pending(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    async with serving(settings) as http:
        for _ in range(3):
            await post(http, samples.sample("ORDERS.IMPORT"))
        await post(http, b"not json")
        stream = keys.completed("ORDERS.IMPORT")
        await redis.xgroup_create(stream, "crm-sync", id="0")
        await redis.xreadgroup("crm-sync", "worker-1", {stream: ">"}, count=1)
        values = await scrape(http)
        await post(http, samples.sample("ORDERS.IMPORT"))
        cached = await scrape(http)
    assert value(values, "fanout_stream_length", stream=stream) == 3
    assert value(values, "fanout_stream_length", stream=keys.dead_letters()) == 1
    assert value(values, "fanout_group_pending", stream=stream, group="crm-sync") == 1
    assert value(values, "fanout_group_lag", stream=stream, group="crm-sync") == 2
    # Read from Redis at most every few seconds, not on every scrape.
    assert value(cached, "fanout_stream_length", stream=stream) == 3


@pytest.mark.spawns
async def test_too_large_and_unavailable_outcomes(settings: Settings, tmp_path: Path) -> None:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    own = dataclasses.replace(settings, redis_url=server.url, max_body_bytes=100)
    try:
        async with serving(own) as http:
            before = await scrape(http)
            assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 413
            small = dataclasses.replace(own, max_body_bytes=1_000_000)
            async with serving(small) as other:
                server.stop()
                assert (await post(other, samples.sample("ORDERS.IMPORT"))).status_code == 503
                after = await scrape(other)
    finally:
        server.stop()
    # Metrics are per process: both apps here count into the same registry.
    too_large = value(after, "fanout_deliveries_total", type="none", outcome="too_large")
    assert (
        too_large - value(before, "fanout_deliveries_total", type="none", outcome="too_large") == 1
    )
    unavailable = value(
        after, "fanout_deliveries_total", type="ORDERS.IMPORT", outcome="unavailable"
    )
    assert (
        unavailable
        - value(before, "fanout_deliveries_total", type="ORDERS.IMPORT", outcome="unavailable")
        == 1
    )


async def test_refusals_and_dead_letters_are_logged_without_secrets(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service")
    action = samples.sample("VOUCHERS.IMPORT") | {"status": "CANCELLED"}
    body = msgspec.json.encode(action)
    assert (await post(http, body)).status_code == 200
    assert (await post(http, body, secret="wrong")).status_code == 401

    lines = [JsonFormatter().format(record) for record in caplog.records]
    parsed = [json.loads(line) for line in lines]
    refusals = [p for p in parsed if p["msg"] == "webhook refused"]
    assert [(p["status"], p["outcome"]) for p in refusals] == [(401, "invalid_signature")]
    [kept] = [p for p in parsed if p["msg"] == "webhook dead-lettered"]
    assert (kept["status"], kept["outcome"], kept["reason"]) == (
        200,
        "dead_lettered",
        "invalid_payload",
    )
    assert kept["type"] == "VOUCHERS.IMPORT" and kept["dead_letter"]
    letters = [p for p in parsed if p["msg"] == "dead letter"]
    assert len(letters) == 1 and letters[0]["reason"] == "invalid_payload"
    text = "\n".join(lines)
    assert SECRET not in text
    assert '"result"' not in text and "SUMMER-" not in text


@pytest.mark.spawns
async def test_redis_outage_and_recovery_are_logged_once_each(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service")
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    own = dataclasses.replace(settings, redis_url=server.url)
    try:
        async with serving(own) as http:
            server.stop()
            for _ in range(3):
                assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 503
            server.start()
            for _ in range(3):
                assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
    finally:
        server.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "service.publish"]
    assert messages == ["redis unavailable", "redis recovered"]


def test_log_formats() -> None:
    from service.logs import TextFormatter

    record = logging.LogRecord("service", logging.WARNING, __file__, 1, "dead letter", None, None)
    record.fields = {"reason": "conflict", "entry_id": "1-0", "detail": None}
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning"
    assert line["msg"] == "dead letter"
    assert line["reason"] == "conflict" and line["entry_id"] == "1-0"
    assert line["ts"].endswith("+00:00")
    text = TextFormatter().format(record)
    assert "dead letter" in text and "reason=conflict" in text and "detail" not in text


async def test_every_delivery_is_one_log_line_without_body_or_signature(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service")
    body = msgspec.json.encode(samples.sample("ORDERS.IMPORT"))
    first, again = await post(http, body), await post(http, body)
    assert (first.status_code, again.status_code) == (202, 200)

    parsed = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    lines = [p for p in parsed if p["msg"] in ("webhook accepted", "webhook duplicate")]
    assert [(p["msg"], p["status"], p["outcome"]) for p in lines] == [
        ("webhook accepted", 202, "accepted"),
        ("webhook duplicate", 200, "duplicate"),
    ]
    for line in lines:
        assert line["level"] == "info"
        assert (line["method"], line["path"]) == ("POST", "/webhooks/voucherify")
        assert line["type"] == "ORDERS.IMPORT" and line["id"] == first.json()["id"]
        assert isinstance(line["ms"], float)
    text = json.dumps(parsed)
    assert signature.sign(body, SECRET.encode()) not in text and '"failed"' not in text


def test_request_durations_land_in_the_buckets_observe_would_put_them_in() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from service import metrics

    def samples(histogram: Histogram, registry: CollectorRegistry) -> dict[str, float]:
        # As a scrape reads it: through the registry (which adds the counts still held).
        [family] = [f for f in registry.collect() if f.name == histogram._name]
        return {f"{s.name}{s.labels}": s.value for s in family.samples if "_created" not in s.name}

    own = CollectorRegistry()
    reference = Histogram(
        "reference_seconds", "", buckets=metrics.REQUEST_SECONDS._upper_bounds[:-1], registry=own
    )
    before = samples(metrics.REQUEST_SECONDS, metrics.REGISTRY)
    for seconds in (0.0, 0.0004, 0.0005, 0.00051, 0.0249, 0.025, 1.0, 4.9, 5.0, 7.5, 600.0):
        metrics.request_seconds(seconds)
        reference.observe(seconds)
    after = samples(metrics.REQUEST_SECONDS, metrics.REGISTRY)
    grown = {k.replace("fanout_request_duration", "x"): after[k] - before[k] for k in after}
    expected = {k.replace("reference", "x"): v for k, v in samples(reference, own).items()}
    assert grown == pytest.approx(expected)
