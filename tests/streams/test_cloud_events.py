"""CloudEvents entries (FANOUT_CLOUDEVENTS=1): what the CloudEvents SDK reads from ``data``."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import msgspec
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from service.config import Settings
from service.consumer.poison import Poison, PoisonLetters
from service.domain import actions, completion, samples, webhook_samples, webhooks
from service.streams import cloud_events
from service.streams.keys import Keys
from service.streams.replay import Replayer
from tests.support.http import post, serving

SOURCE = cloud_events.source("voucherify")
RECEIVED = datetime(2024, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)


def read(data: bytes) -> CloudEvent:
    event = JSONFormat().read(None, data)
    assert isinstance(event, CloudEvent)
    return event


def build(body: dict[str, Any], received_at: datetime = RECEIVED) -> tuple[bytes, bytes]:
    action = actions.decode(msgspec.json.encode(body))
    event = completion.from_action(action, received_at)
    data = completion.encode_event(event)
    return cloud_events.for_event(SOURCE, event, data), data


# --- the CloudEvent of one event ---------------------------------------------


def test_a_completion_reads_back_with_every_attribute() -> None:
    body = samples.sample("VOUCHERS.IMPORT", id_="aa_0a1b2c", request_id="v-0f0e0d")
    data, event = build(body)
    ce = read(data)
    assert ce.get_specversion() == "1.0"
    assert ce.get_source() == "/voucherify/voucherify"
    assert ce.get_type() == "io.voucherify.async_action.vouchers.import.completed"
    assert ce.get_subject() == "aa_0a1b2c"
    assert ce.get_datacontenttype() == "application/json"
    assert ce.get_time() == datetime.fromisoformat(body["updated_at"])
    assert ce.get_data() == msgspec.json.decode(event)
    assert len(ce.get_id()) == 32


def test_progress_has_its_own_type() -> None:
    body = samples.sample("CAMPAIGN.VOUCHERS_IMPORT_CSV", status="IN_PROGRESS", progress=40)
    ce = read(build(body)[0])
    assert ce.get_type() == "io.voucherify.async_action.campaign.vouchers_import_csv.progress"
    assert ce.get_data()["progress"] == 40  # type: ignore[index]


def test_the_id_is_stable_across_resends() -> None:
    # A resend after the dedup key expired makes a new entry: same CloudEvent id.
    body = samples.sample("ORDERS.IMPORT", id_="aa_1", request_id="v-1")
    first = read(build(body)[0])
    later = read(build(body, RECEIVED + timedelta(days=9))[0])
    assert later.get_id() == first.get_id()
    assert later.get_time() == first.get_time()  # the vendor's time, not the arrival


def test_the_id_differs_per_entry() -> None:
    base = {"id_": "aa_1", "request_id": "v-1"}
    bodies = [
        samples.sample("ORDERS.IMPORT", **base),
        samples.sample("ORDERS.IMPORT", id_="aa_1", request_id="v-2"),
        samples.sample("ORDERS.IMPORT", id_="aa_2", request_id="v-1"),
        samples.sample("VOUCHERS.IMPORT", **base),
        samples.sample("ORDERS.IMPORT", status="ENQUEUED", **base),
        samples.sample("ORDERS.IMPORT", status="IN_PROGRESS", progress=10, **base),
        samples.sample("ORDERS.IMPORT", status="IN_PROGRESS", progress=20, **base),
    ]
    ids = {read(build(body)[0]).get_id() for body in bodies}
    assert len(ids) == len(bodies)


def test_ids_do_not_collide_on_separators() -> None:
    # A joined key would read ("a:b", "c") and ("a", "b:c") alike; the JSON identity does not.
    assert cloud_events.event_id("completed", "T", "a:b", "c") != cloud_events.event_id(
        "completed", "T", "a", "b:c"
    )


def test_a_naive_or_missing_time_is_utc() -> None:
    body = samples.sample("SKUS.IMPORT_CSV")
    body["updated_at"] = "2024-11-28T10:00:00"  # no offset
    assert read(build(body)[0]).get_time() == datetime(2024, 11, 28, 10, tzinfo=UTC)
    body["updated_at"] = body["created_at"] = None
    assert read(build(body)[0]).get_time() == RECEIVED


def test_the_source_is_a_uri_reference_for_any_prefix() -> None:
    assert cloud_events.source("acme-prod") == "/voucherify/acme-prod"
    assert cloud_events.source("a/b%c") == "/voucherify/a%2Fb%25c"


def test_a_webhook_event_reads_back_with_every_attribute() -> None:
    body = webhook_samples.envelope("voucher.published", event_id="evt_1", group_id="v-1")
    delivery = webhooks.decode_envelope(msgspec.json.encode(body))
    event = delivery.event(RECEIVED)
    data = webhooks.encode_event(event)
    ce = read(cloud_events.for_event(SOURCE, event, data))
    assert ce.get_type() == "io.voucherify.webhook.voucher.published"
    assert ce.get_subject() == "evt_1"
    assert ce.get_time() == datetime.fromisoformat(body["event"]["created_at"])
    assert ce.get_data() == msgspec.json.decode(data)
    # Its id is the dedup identity's: the same event through a second webhook (another
    # sendout) is the same delivery, so the same id.
    other = webhooks.decode_envelope(msgspec.json.encode(body | {"id": "whs_other"}))
    again = read(cloud_events.for_event(SOURCE, other.event(RECEIVED), data))
    assert again.get_id() == ce.get_id()
    assert ce.get_id() == cloud_events.event_id("webhook", "voucher.published", "evt_1", "v-1")


def test_a_webhook_event_without_a_valid_time_has_the_arrival() -> None:
    body = webhook_samples.envelope("customer.created")
    body["created_at"] = body["event"]["created_at"] = "yesterday"
    event = webhooks.decode_envelope(msgspec.json.encode(body)).event(RECEIVED)
    ce = read(cloud_events.for_event(SOURCE, event, webhooks.encode_event(event)))
    assert ce.get_time() == RECEIVED


# Any id the receiver accepts: printable (no control, line-separator or bidi characters).
ID_CHARACTERS = st.characters(
    exclude_categories=("Cc", "Cs", "Zl", "Zp"),
    exclude_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)


@given(
    id_=st.text(ID_CHARACTERS, min_size=1, max_size=40),
    request_id=st.one_of(st.none(), st.text(ID_CHARACTERS, max_size=40)),
)
def test_any_ids_give_a_readable_cloud_event(id_: str, request_id: str | None) -> None:
    body = samples.sample("CUSTOMERS.IMPORT_CSV") | {"id": id_, "request_id": request_id}
    ce = read(build(body)[0])
    assert ce.get_subject() == id_
    assert ce.get_data()["request_id"] == request_id  # type: ignore[index]


# --- entries written by the service ------------------------------------------


async def entries(redis: Redis, stream: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(stream)]


ACTION_FIELDS = [b"type", b"status", b"id", b"request_id", b"event"]
WEBHOOK_FIELDS = [b"type", b"id", b"request_id", b"sendout_id", b"project_id", b"event"]


class Kind(NamedTuple):
    body: dict[str, Any]
    stream: Callable[[Keys], str]
    fields: list[bytes]
    type: str


@pytest.fixture(params=["async_action", "webhook_event"])
def kind(request: pytest.FixtureRequest) -> Kind:
    """An entry of either kind: its delivery (id aa_ce1), stream, fields and CloudEvent type."""
    if request.param == "async_action":
        return Kind(
            samples.sample("VOUCHERS.IMPORT", id_="aa_ce1", request_id="v-ce1"),
            lambda k: k.completed("VOUCHERS.IMPORT"),
            ACTION_FIELDS,
            "io.voucherify.async_action.vouchers.import.completed",
        )
    return Kind(
        webhook_samples.envelope("voucher.published", event_id="aa_ce1", group_id="v-ce1"),
        lambda k: k.events("voucher.published"),
        WEBHOOK_FIELDS,
        "io.voucherify.webhook.voucher.published",
    )


async def test_a_delivery_writes_a_cloud_event_beside_the_event(
    redis: Redis, keys: Keys, settings: Settings, kind: Kind
) -> None:
    async with serving(dataclasses.replace(settings, cloudevents=True)) as http:
        assert (await post(http, kind.body)).status_code == 202
        # A resend (for a webhook event: the same event through a second webhook).
        again = kind.body | {"id": "whs_2"} if "data" in kind.body else kind.body
        assert (await post(http, again)).status_code == 200
    [entry] = await entries(redis, kind.stream(keys))
    assert list(entry) == [*kind.fields, b"data"]
    assert entry[b"id"] == b"aa_ce1"
    ce = read(entry[b"data"])
    assert ce.get_source() == f"/voucherify/{keys.prefix}"
    assert ce.get_type() == kind.type
    assert ce.get_subject() == "aa_ce1"
    assert ce.get_data() == msgspec.json.decode(entry[b"event"])


async def test_progress_entries_carry_one_too(redis: Redis, keys: Keys, settings: Settings) -> None:
    body = samples.sample("ORDERS.IMPORT", status="IN_PROGRESS", progress=30)
    async with serving(dataclasses.replace(settings, cloudevents=True)) as http:
        assert (await post(http, body)).status_code == 202
    [entry] = await entries(redis, keys.progress("ORDERS.IMPORT"))
    assert read(entry[b"data"]).get_type() == "io.voucherify.async_action.orders.import.progress"


async def test_off_by_default(redis: Redis, keys: Keys, http: Any) -> None:
    assert (await post(http, samples.sample("SKUS.IMPORT_CSV"))).status_code == 202
    [entry] = await entries(redis, keys.completed("SKUS.IMPORT_CSV"))
    assert list(entry) == ACTION_FIELDS


async def test_a_resend_after_expiry_and_trim_has_the_same_id(
    redis: Redis, keys: Keys, settings: Settings, kind: Kind
) -> None:
    body, stream = kind.body, kind.stream(keys)
    # A FANOUT_MAX_AGE past the dedup window lets a resend be published again.
    config = dataclasses.replace(settings, cloudevents=True, dedup_ttl=1, max_age=3600)
    async with serving(config) as http:
        assert (await post(http, body)).status_code == 202
        [first] = await entries(redis, stream)
        await redis.xtrim(stream, maxlen=0)
        await asyncio.sleep(2.1)  # its record's bucket left the window: the resend is new
        assert (await post(http, body)).status_code == 202
    [again] = await entries(redis, stream)
    before, after = read(first[b"data"]), read(again[b"data"])
    assert after.get_id() == before.get_id()
    assert after.get_time() == before.get_time()
    assert after.get_data()["received_at"] != before.get_data()["received_at"]  # type: ignore[index]


async def test_a_replayed_poison_entry_has_the_same_id(
    redis: Redis, keys: Keys, settings: Settings, kind: Kind
) -> None:
    body, key = kind.body, kind.stream(keys)
    config = dataclasses.replace(settings, cloudevents=True)
    async with serving(config) as http:
        assert (await post(http, body)).status_code == 202
    [(entry_id, first)] = await redis.xrange(key)
    await redis.xdel(key, entry_id)  # a group gave up on it and it was trimmed since
    letters = PoisonLetters(redis, keys, ttl=60, maxlen=100)
    poison = Poison("g", "c", key, entry_id.decode(), 5, 5, first[b"event"], "bug")
    replayed = await Replayer(redis, config).replay(await letters.send(poison))
    assert replayed.outcome == "requeued"
    [again] = await entries(redis, key)
    assert again == first  # every field, the CloudEvent with its id included


def test_the_id_scheme_is_pinned() -> None:
    # Consumers deduplicate on it across versions: the docs/interop.md example, computed.
    identity = ("completed", "VOUCHERS.IMPORT", "aa_0a1b2c3d4e5f6a7b8c", "v-0c1d2e3f4a5b6c7d8e")
    assert cloud_events.event_id(*identity) == "4bdbc07bd8ded298e8a8f489ee449487"
