"""Webhook events in the v2024-01-01 envelope: drift, dedup identity and the outbound event.

The generated data Structs and the vendor's examples are tested in
``test_webhook_data.py``, the envelope's event type and refusals in
``test_envelope.py``; both use the helpers here.

The data of each event type is the vendor's own example, wrapped in the
envelope as Voucherify sends it: project-settings types from a project
webhook, the others from a distribution (``source.object == "distribution"``,
the event type in ``event.type``).
"""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain import inbound, webhook_data, webhook_samples, webhooks
from service.domain.webhook_samples import TYPES, envelope
from tests.support.strategies import json_value

RECEIVED = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def encode(payload: dict[str, Any]) -> bytes:
    return msgspec.json.encode(payload)


def deliver(payload: dict[str, Any] | bytes) -> webhooks.WebhookDelivery:
    result = inbound.decode(payload if isinstance(payload, bytes) else encode(payload))
    assert isinstance(result, webhooks.WebhookDelivery)
    return result


def published(delivery: webhooks.WebhookDelivery) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(webhooks.encode_event(delivery.event(RECEIVED)))
    return event


# --- drift: accepted, flagged -------------------------------------------------------


def test_unknown_event_type_is_accepted_as_drift() -> None:
    payload = envelope("voucher.teleported", {"voucher": {"code": "X"}}, distribution=False)
    delivery = deliver(payload)
    assert delivery.type == "voucher.teleported"
    assert not delivery.schema_valid
    assert delivery.schema_error == "Unknown event type `voucher.teleported`: no documented schema"
    event = published(delivery)
    assert event["schema_valid"] is False
    assert event["data"] == {"voucher": {"code": "X"}}


def test_data_not_matching_its_schema_is_drift_with_the_path() -> None:
    data = webhook_samples.example("voucher.published")
    data["customer"]["email"] = {"primary": "jane@jane.io"}
    delivery = deliver(envelope("voucher.published", data))
    assert not delivery.schema_valid
    assert delivery.schema_error == (
        "Expected `str | null`, got `object` - at `$.data.customer.email`"
    )
    assert published(delivery)["data"] == data


def test_unknown_fields_are_kept_in_the_published_data() -> None:
    data = webhook_samples.example("voucher.published") | {"brand_new": {"x": [1, 2]}}
    delivery = deliver(envelope("voucher.published", data))
    assert delivery.schema_valid
    assert published(delivery)["data"]["brand_new"] == {"x": [1, 2]}


def test_send_test_webhook_button() -> None:
    # Voucherify's "Send test webhook" posts an envelope of a type we may not know.
    payload = {
        "id": "whs_0e16e42bc6e0c65b57",
        "project_id": "proj_5T4Rpl4T1nuM",
        "created_at": "2024-01-01T11:11:11.111Z",
        "type": "webhook.test",
        "data": {},
        "source": {"id": "wh_j56Vfy47Vx9YOX7QYD1fzHnc", "object": "webhook"},
        "event": {},
    }
    delivery = deliver(payload)
    assert delivery.type == "webhook.test"
    assert not delivery.schema_valid


def test_a_consumer_decoding_webhook_events_leaves_no_reference_cycle() -> None:
    from service import decode_event

    delivery = deliver(envelope("voucher.published"))
    entry = webhooks.encode_event(delivery.event(RECEIVED))
    assert decode_event(entry).type == "voucher.published"
    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            decode_event(entry)
        assert gc.collect() == 0
    finally:
        gc.enable()


# --- dedup identity ------------------------------------------------------------------


def test_retry_pretty_printed_resend_and_second_webhook_are_one_delivery() -> None:
    first = envelope("voucher.published")
    first["data"]["voucher"]["metadata"] = {"note": "café/ü", "ratio": 0.5}
    original = deliver(first)
    retry = deliver(encode(first))
    pretty = deliver(json.dumps(first, indent=4).encode())  # also escapes é as \u00e9
    second = dict(first) | {
        "id": "whs_second_webhook",
        "source": {"id": "wh_other", "object": "webhook", "target_url": "https://b.example"},
    }
    via_second_webhook = deliver(second)
    for other in (retry, pretty, via_second_webhook):
        assert (other.type, other.id, other.request_id) == (
            original.type,
            original.id,
            original.request_id,
        )
        assert other.digest == original.digest


def test_different_data_or_event_is_a_different_digest() -> None:
    first = envelope("voucher.published")
    changed = json.loads(json.dumps(first))
    changed["data"]["voucher"]["code"] = "OTHER"
    assert deliver(changed).digest != deliver(first).digest
    other_event = json.loads(json.dumps(first))
    other_event["event"]["id"] = "evt_other"
    assert deliver(other_event).digest != deliver(first).digest


# --- the outbound event -----------------------------------------------------------------


def test_outbound_event_is_the_contracts_json() -> None:
    payload = envelope("voucher.published")
    event = published(deliver(payload))
    assert list(event) == [
        "schema",
        "type",
        "id",
        "sendout_id",
        "request_id",
        "project_id",
        "created_at",
        "received_at",
        "source",
        "webhook_type",
        "schema_valid",
        "schema_error",
        "data",
    ]
    assert event["schema"] == 1
    assert event["type"] == "voucher.published"
    assert event["id"] == payload["event"]["id"]
    assert event["sendout_id"] == payload["id"]
    assert event["request_id"] == payload["event"]["group_id"]
    assert event["project_id"] == payload["project_id"]
    assert event["created_at"] == payload["event"]["created_at"]
    assert event["received_at"] == "2024-01-01T12:00:00Z"
    assert event["source"] == payload["source"]
    assert event["webhook_type"] == "voucher.published"
    assert event["schema_valid"] is True
    assert event["schema_error"] is None


def test_data_is_published_byte_for_byte() -> None:
    data = b'{ "voucher" :{"code":"A\\u00e9", "amount": 1.50e2},\n "x": [ ] }'
    head = b'{"id":"whs_1","type":"voucher.published","source":{"object":"webhook"},"data":'
    delivery = deliver(head + data + b"}")
    assert webhooks.encode_event(delivery.event(RECEIVED)).endswith(b'"data":' + data + b"}")


def test_decode_webhook_event_gives_typed_data() -> None:
    delivery = deliver(envelope("voucher.published"))
    event = webhooks.decode_webhook_event(webhooks.encode_event(delivery.event(RECEIVED)))
    assert isinstance(event, webhooks.WebhookEvent)
    assert isinstance(event.data, webhook_data.EventVoucherPublishedData)
    assert event.data == delivery.data
    assert event.received_at == RECEIVED
    assert event.source is not None and event.source.object == "webhook"


def test_decode_webhook_event_of_drift_gives_the_data_as_published() -> None:
    delivery = deliver(envelope("voucher.teleported", {"a": [1]}, distribution=False))
    event = webhooks.decode_webhook_event(webhooks.encode_event(delivery.event(RECEIVED)))
    assert event.data == {"a": [1]}
    assert event.schema_valid is False
    assert event.schema_error == delivery.schema_error


# --- property -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    type_=st.sampled_from(TYPES),
    data=st.dictionaries(st.text(max_size=10), json_value, max_size=6),
    indent=st.sampled_from([None, 0, 2]),
)
def test_any_object_data_is_accepted_and_published_unchanged(
    type_: str, data: dict[str, Any], indent: int | None
) -> None:
    payload = envelope(type_, data)
    body = json.dumps(payload, indent=indent).encode()
    delivery = deliver(body)
    assert delivery.type == type_
    assert delivery.schema_valid == (delivery.data is not None)
    assert published(delivery)["data"] == json.loads(json.dumps(data))
    assert delivery.digest == deliver(encode(payload)).digest
