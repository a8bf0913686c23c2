"""The contract's HTTP table, row by row, against a real uvicorn and a real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import json
from datetime import datetime

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from service.config import Settings
from service.domain import actions, completion, samples
from service.http import signature
from service.http.app import WEBHOOK_PATH, create_app
from service.streams.keys import Keys
from service.streams.publisher import Publisher
from tests.support.http import SECRET, dead_lettered, post, sent_twice, serving, signed
from tests.support.servers import running_uvicorn


def fields(entry: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in entry.items()}


async def test_new_completion_is_accepted_and_stored(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    action = samples.sample("VOUCHERS.IMPORT", status="DONE")
    response = await post(http, action)

    assert response.status_code == 202
    answer = response.json()
    stream = keys.completed("VOUCHERS.IMPORT")
    assert answer["status"] == "accepted"
    assert answer["id"] == action["id"]
    assert answer["stream"] == stream
    entries = await redis.xrange(stream)
    assert [entry_id.decode() for entry_id, _ in entries] == [answer["entry_id"]]
    entry = fields(entries[0][1])
    assert entry["type"] == "VOUCHERS.IMPORT"
    assert entry["status"] == "DONE"
    assert entry["id"] == action["id"]
    assert entry["request_id"] == action["request_id"]
    event = json.loads(entry["event"])
    assert event["schema"] == 1
    assert event["type"] == "VOUCHERS.IMPORT"
    assert event["done_count"] == action["result"]["done_count"]
    assert event["failed_count"] == action["result"]["failed_count"]
    assert event["processing_time"] == 755
    assert event["received_at"].endswith("Z")


async def test_repeated_delivery_is_a_duplicate_with_the_first_entry_id(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    await sent_twice(http, msgspec.json.encode(samples.sample("CUSTOMERS.IMPORT_CSV")))
    assert await redis.xlen(keys.completed("CUSTOMERS.IMPORT_CSV")) == 1


async def test_same_action_pretty_printed_is_still_a_duplicate(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Re-sent from the audit log the bytes may differ; the decoded object does not.
    action = samples.sample("SKUS.IMPORT_CSV")
    await sent_twice(http, msgspec.json.encode(action), json.dumps(action, indent=4).encode())
    assert await redis.xlen(keys.completed("SKUS.IMPORT_CSV")) == 1
    assert await redis.xlen(keys.dead_letters()) == 0


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing"),
        ({signature.HEADER: "0" * 64}, "does not match"),
        ({signature.HEADER: "zz" * 32}, "hexadecimal"),
        ({signature.HEADER: "abc"}, "hexadecimal"),
        ({signature.HEADER: ""}, "hexadecimal"),
    ],
)
async def test_signature_missing_or_wrong_is_401(
    http: httpx.AsyncClient, redis: Redis, keys: Keys, headers: dict[str, str], detail: str
) -> None:
    body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))
    response = await http.post(
        WEBHOOK_PATH, content=body, headers={"content-type": "application/json", **headers}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert detail in response.json()["detail"]
    assert await redis.xlen(keys.completed("VOUCHERS.IMPORT")) == 0
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_signature_by_another_secret_is_401(http: httpx.AsyncClient) -> None:
    response = await post(http, samples.sample("ORDERS.IMPORT"), secret="not-the-secret")
    assert response.status_code == 401


async def test_non_ascii_and_repeated_signature_headers_are_401(http: httpx.AsyncClient) -> None:
    body = msgspec.json.encode(samples.sample("ORDERS.IMPORT"))
    good = signature.sign(body, SECRET.encode())
    raw_headers = [
        [(b"content-type", b"application/json"), (signature.HEADER.encode(), "é".encode() * 32)],
        [
            (b"content-type", b"application/json"),
            (signature.HEADER.encode(), good.encode()),
            (signature.HEADER.encode(), good.encode()),
        ],
    ]
    for headers in raw_headers:
        response = await http.post(WEBHOOK_PATH, content=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "invalid_signature"


async def test_sender_ip_not_allowed_is_403(settings: Settings, redis: Redis, keys: Keys) -> None:
    import ipaddress

    denied = dataclasses.replace(settings, allow_ips=(ipaddress.ip_network("10.0.0.0/8"),))
    async with serving(denied) as client:
        response = await post(client, samples.sample("VOUCHERS.IMPORT"))
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden"}
    assert await redis.xlen(keys.completed("VOUCHERS.IMPORT")) == 0


async def test_sender_ip_inside_allowlist_is_accepted(settings: Settings, redis: Redis) -> None:
    import ipaddress

    allowed = dataclasses.replace(
        settings,
        allow_ips=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8")),
    )
    async with serving(allowed) as client:
        response = await post(client, samples.sample("VOUCHERS.IMPORT"))
    assert response.status_code == 202


async def test_signed_plain_text_is_dead_lettered_once_and_answered_200(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Issue 25: a signed body the service cannot read was a 400, which Voucherify
    # retried 12 times before it disabled the webhook. It is kept and answered 2xx.
    body = b"{this is not json"
    first = await post(http, body)
    again = await post(http, body)

    letter = await dead_lettered(first, redis, keys, body, "malformed_json")
    assert first.json()["detail"]
    assert again.json() == first.json(), "a resend: the same letter, the same answer"
    assert letter["sha256"] == hashlib.sha256(body).hexdigest()
    assert await redis.xlen(keys.dead_letters()) == 1


async def test_wrong_field_type_is_dead_lettered_naming_the_path(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    action = samples.sample("CUSTOMERS.IMPORT_CSV")
    action["result"]["done_count"] = "forty"
    body = msgspec.json.encode(action)
    response = await post(http, body)
    again = await post(http, body)

    await dead_lettered(again, redis, keys, body, "invalid_payload")
    assert (
        response.json()
        == again.json()
        == {
            "status": "dead_lettered",
            "reason": "invalid_payload",
            "dead_letter": (await redis.xrange(keys.dead_letters()))[0][0].decode(),
            "detail": "Expected `int | null`, got `str` - at `$.result.done_count`",
        }
    )
    assert await redis.xlen(keys.completed("CUSTOMERS.IMPORT_CSV")) == 0


async def test_progress_of_the_wrong_type_is_dead_lettered(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    # Issue 25: measured as a 422 before.
    body = msgspec.json.encode(
        samples.sample("VOUCHERS.IMPORT", status="IN_PROGRESS") | {"progress": "50%"}
    )
    response = await post(http, body)
    await dead_lettered(response, redis, keys, body, "invalid_payload")
    assert response.json()["detail"].endswith("at `$.progress`")
    assert await redis.xlen(keys.progress("VOUCHERS.IMPORT")) == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "", "Expected `str` of length >= 1 - at `$.id`"),
        ("id", "a" * 257, "Expected `str` of length <= 256 - at `$.id`"),
        ("id", "x" * 900_000, "Expected `str` of length <= 256 - at `$.id`"),
        ("id", "aa_\x00nul", "at `$.id`"),
        ("id", "aa_\x1b[2J\x1b[31mred", "at `$.id`"),
        ("id", "aa_1\n", "at `$.id`"),
        ("id", "aa_\u202egnp.exe", "at `$.id`"),
        ("request_id", "v" * 257, "Expected `str` of length <= 256 - at `$.request_id`"),
        ("request_id", "v-\r\n", "at `$.request_id`"),
    ],
    ids=["empty", "257", "900KB", "NUL", "ANSI", "newline", "bidi", "rid-257", "rid-CRLF"],
)
async def test_ids_are_bounded_and_printable(
    settings: Settings, redis: Redis, keys: Keys, field: str, value: str, message: str
) -> None:
    # Issue 13: an empty id shared a done marker with every other empty id; a 900 KB
    # id was stored four times; NUL and ANSI escapes reached operators' terminals.
    action = samples.sample("VOUCHERS.IMPORT") | {field: value}
    body = msgspec.json.encode(action)
    async with serving(dataclasses.replace(settings, max_body_bytes=2_000_000)) as http:
        response = await post(http, body)
    await dead_lettered(response, redis, keys, body, "invalid_payload")
    assert response.json()["detail"].endswith(message)
    assert await redis.xlen(keys.dead_letters()) == 1
    assert await redis.xlen(keys.completed("VOUCHERS.IMPORT")) == 0


async def test_ids_at_the_limits_are_accepted(http: httpx.AsyncClient) -> None:
    longest = samples.sample("VOUCHERS.IMPORT", id_="a" * 256, request_id="v" * 256)
    absent = samples.sample("VOUCHERS.IMPORT")
    del absent["request_id"]
    empty = samples.sample("VOUCHERS.IMPORT") | {"request_id": ""}
    unicode = samples.sample("VOUCHERS.IMPORT", id_="aa_zażółć_日本")
    for action in (longest, absent, empty, unicode):
        assert (await post(http, action)).status_code == 202


async def test_declared_body_over_the_limit_is_413(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    small = dataclasses.replace(settings, max_body_bytes=2048)
    action = samples.sample("VOUCHERS.IMPORT") | {"padding": "x" * 4096}
    async with serving(small) as client:
        response = await post(client, action)
    assert response.status_code == 413
    assert response.json() == {"error": "body_too_large"}
    assert await redis.xlen(keys.completed("VOUCHERS.IMPORT")) == 0


async def test_chunked_body_over_the_limit_is_413(settings: Settings) -> None:
    small = dataclasses.replace(settings, max_body_bytes=2048)
    body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT") | {"padding": "x" * 8192})

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with serving(small) as client:
        response = await client.post(WEBHOOK_PATH, content=chunks(), headers=signed(body))
    assert response.status_code == 413
    assert response.json() == {"error": "body_too_large"}


async def test_body_at_the_limit_is_accepted(settings: Settings) -> None:
    action = samples.sample("VOUCHERS.IMPORT")
    body = msgspec.json.encode(action)
    exact = dataclasses.replace(settings, max_body_bytes=len(body))
    async with serving(exact) as client:
        response = await post(client, body)
    assert response.status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_content_type_not_json_is_415(http: httpx.AsyncClient, content_type: str) -> None:
    body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))
    headers = signed(body) | {"content-type": content_type}
    response = await http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 415
    assert response.json() == {"error": "unsupported_media_type"}


async def test_json_content_type_with_charset_is_accepted(http: httpx.AsyncClient) -> None:
    response = await post(
        http,
        samples.sample("VOUCHERS.IMPORT"),
        **{"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 202


@pytest.mark.parametrize("type_", actions.TYPES)
async def test_every_type_round_trips_into_its_stream(
    http: httpx.AsyncClient, redis: Redis, keys: Keys, type_: str
) -> None:
    for status in ("DONE", "FAILED"):
        action = samples.sample(type_, status=status)
        response = await post(http, action)
        assert response.status_code == 202, response.text

    entries = await redis.xrange(keys.completed(type_))
    assert [fields(e)["status"] for _, e in entries] == ["DONE", "FAILED"]
    event = completion.decode_event(entries[-1][1][b"event"])
    sent = actions.decode(msgspec.json.encode(action))
    assert type(event).__name__ == f"{type(sent).__name__}Event"
    assert event.type == type_
    assert event.id == sent.id
    assert event.request_id == sent.request_id
    assert event.status == "FAILED"
    assert event.created_at == sent.created_at
    assert event.result == sent.result
    assert event.result is not None
    # The same result, field for field, as the sender's JSON said it; timestamps
    # are typed, so compare them as instants rather than as text.
    received = msgspec.to_builtins(event.result)
    expected = {k: v for k, v in action["result"].items() if v is not None}
    assert received.keys() == expected.keys()
    for name, value in expected.items():
        if name == "reports_available_till":
            assert datetime.fromisoformat(received[name]) == datetime.fromisoformat(value)
        else:
            assert received[name] == value, name


async def test_healthz_readyz_and_metrics(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    await post(http, samples.sample("ORDERS.IMPORT"))
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert 'fanout_deliveries_total{outcome="accepted",type="ORDERS.IMPORT"}' in metrics.text


async def test_unknown_route_and_method_answer_json(http: httpx.AsyncClient) -> None:
    missing = await http.get("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found"}
    wrong = await http.get(WEBHOOK_PATH)
    assert wrong.status_code == 405


async def test_concurrent_identical_deliveries_give_one_entry(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    body = msgspec.json.encode(samples.sample("VOUCHERS.BULK_UPDATE"))
    responses = await asyncio.gather(*(post(http, body) for _ in range(200)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(202) == 1
    assert statuses.count(200) == 199
    entry_ids = {r.json()["entry_id"] for r in responses}
    assert len(entry_ids) == 1
    assert await redis.xlen(keys.completed("VOUCHERS.BULK_UPDATE")) == 1


async def test_background_tasks_run_with_the_app_and_stop_with_it(settings: Settings) -> None:
    seen: list[object] = []

    async def task(publisher: Publisher) -> None:
        seen.append(await publisher.ping())
        try:
            await asyncio.sleep(3600)
        finally:
            seen.append("stopped")

    async with running_uvicorn(create_app(settings, background=[task])):
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
    assert seen == [True, "stopped"]


async def test_start_up_objects_stay_out_of_the_collector_while_serving(settings: Settings) -> None:
    # Full collections walking them paused deliveries for 25-45 ms (docs/performance.md).
    async with serving(settings) as http:
        assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
        frozen = gc.get_freeze_count()
    assert frozen > 0
    assert gc.get_freeze_count() == 0  # given back at shutdown
