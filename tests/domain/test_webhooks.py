"""Webhook events in the v2024-01-01 envelope: every documented type, spellings, drift, refusals.

The data of each event type is the vendor's own example, wrapped in the
envelope as Voucherify sends it: project-settings types from a project
webhook, the others from a distribution (``source.object == "distribution"``,
the event type in ``event.type``).
"""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain import actions, inbound, webhook_data, webhook_samples, webhooks
from service.domain.inbound import Unpublishable
from service.domain.webhook_samples import TYPES, envelope
from tests.support.scripts import load_script
from tests.support.strategies import json_value

ROOT = Path(__file__).resolve().parents[2]
RECEIVED = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)

# The vendor examples that do not decode into their own schema, and why. Every
# other example is schema_valid: 71 of 72.
NOT_VALID = {
    # The example's timestamp is "2024-05-13T10: 24: 01.084Z" (spaces inside):
    # a typo in the document, not a shape to widen to.
    "customer.reward_redemptions.completed": (
        "Invalid RFC3339 encoded datetime - at `$.data.voucher.created_at`"
    ),
}


def encode(payload: dict[str, Any]) -> bytes:
    return msgspec.json.encode(payload)


def deliver(payload: dict[str, Any] | bytes) -> webhooks.WebhookDelivery:
    result = inbound.decode(payload if isinstance(payload, bytes) else encode(payload))
    assert isinstance(result, webhooks.WebhookDelivery)
    return result


def published(delivery: webhooks.WebhookDelivery) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(webhooks.encode_event(delivery.event(RECEIVED)))
    return event


# --- the generated module -------------------------------------------------------


def test_generated_files_are_up_to_date() -> None:
    generator = load_script("gen_webhook_types")
    fresh = generator.generate(generator.SPEC)
    directory = ROOT / "service" / "domain"
    for name, content in fresh.items():
        stale = (directory / name).read_text(encoding="utf-8") != content
        assert not stale, f"{name} is stale: run python scripts/gen_webhook_types.py"


def test_72_event_types_each_with_its_own_struct() -> None:
    assert len(TYPES) == 72
    structs = list(webhook_data.BY_TYPE.values())
    assert len(set(structs)) == 72
    assert all(issubclass(s, webhook_data.WebhookData) for s in structs)
    assert len(webhook_data.PROJECT_SETTINGS_TYPES) == 29  # 28 in the enum, customer.updated
    assert webhook_data.PROJECT_SETTINGS_TYPES.issubset(TYPES)


def test_the_vendors_other_spellings() -> None:
    assert webhook_data.ALIASES == {
        "customer.segment.entered": "customer.entered.segment",
        "bus_val_rule.created": "business_validation_rule.created",
        "bus_val_rule.updated": "business_validation_rule.updated",
        "bus_val_rule.assignment.created": "business_validation_rule.assignment.created",
        "bus_val_rule.assignment.deleted": "business_validation_rule.assignment.deleted",
        "bus_val_rule.deleted": "business_validation_rule.deleted",
        "distribution.manual_distribution_schedule": "manual_distribution_schedule",
    }


def test_field_names_are_the_vendors() -> None:
    # "from" is a Python keyword: the attribute is from_, the JSON name stays "from".
    struct = webhook_data.LoyaltyTierConfigPoints
    assert msgspec.structs.fields(struct)[0].encode_name == "from"
    decoded = msgspec.json.decode(b'{"from": 1, "to": 5}', type=struct)
    assert (decoded.from_, decoded.to) == (1, 5)


# --- the 72 vendor examples --------------------------------------------------------


@pytest.mark.parametrize("type_", TYPES)
def test_every_vendor_example_is_accepted_and_typed(type_: str) -> None:
    payload = envelope(type_)
    delivery = deliver(payload)
    assert delivery.type == type_
    assert delivery.id == payload["event"]["id"]
    assert delivery.request_id == payload["event"]["group_id"]
    assert delivery.sendout_id == payload["id"]
    assert delivery.webhook_type == payload["type"]
    if type_ in NOT_VALID:
        assert not delivery.schema_valid
        assert delivery.data is None
        assert delivery.schema_error == NOT_VALID[type_]
    else:
        assert delivery.schema_valid, delivery.schema_error
        assert type(delivery.data) is webhook_data.BY_TYPE[type_]
    event = published(delivery)
    assert event["data"] == payload["data"]


def test_71_of_72_vendor_examples_are_schema_valid() -> None:
    valid = [t for t in TYPES if deliver(envelope(t)).schema_valid]
    assert len(valid) == 71
    assert sorted(set(TYPES) - set(valid)) == sorted(NOT_VALID)


def test_project_settings_types_come_from_webhooks_the_others_from_distributions() -> None:
    project = envelope("voucher.published")
    assert project["source"]["object"] == "webhook"
    assert project["type"] == "voucher.published"
    distribution = envelope("customer.order.paid")
    assert distribution["source"]["object"] == "distribution"
    assert distribution["type"] == "Fan-out sample"
    assert distribution["event"]["type"] == "customer.order.paid"


def test_typed_data_has_the_vendors_field_names() -> None:
    delivery = deliver(envelope("voucher.published"))
    data = delivery.data
    assert isinstance(data, webhook_data.EventVoucherPublishedData)
    example = webhook_samples.example("voucher.published")
    assert data.voucher is not None
    assert data.voucher.code == example["voucher"]["code"]
    assert data.customer is not None
    assert data.customer.id == example["customer"]["id"]


# --- quirks: where the vendor's examples differ from its schemas -----------------


def test_referee_reward_amount_as_a_number() -> None:
    # redemption.rollback.* examples: referee_reward.amount is 300, the schema says string.
    for amount in (300, "300"):
        data = webhook_samples.example("redemption.rollback.succeeded")
        data["campaign"]["referral_program"]["referee_reward"]["amount"] = amount
        typed = deliver(envelope("redemption.rollback.succeeded", data)).data
        assert isinstance(typed, webhook_data.EventRedemptionRollbackSucceededData)
        assert typed.campaign is not None and typed.campaign.referral_program is not None
        reward = typed.campaign.referral_program.referee_reward
        assert reward is not None and reward.amount == amount


def test_referral_campaigns_as_names() -> None:
    # customer.updated example: referrals.campaigns holds names, the schema says objects.
    item = {"campaign_id": "camp_1", "referrer_id": "cust_1"}
    for campaigns in (["summer_savings_2024"], [item]):
        data = {"customer": {"id": "cust_1", "referrals": {"total": 1, "campaigns": campaigns}}}
        typed = deliver(envelope("customer.updated", data)).data
        assert isinstance(typed, webhook_data.EventCustomerUpdatedData)
        assert typed.customer is not None and typed.customer.referrals is not None
        got = typed.customer.referrals.campaigns
        assert got is not None
        assert msgspec.to_builtins(got) == campaigns


def test_expired_buckets_as_an_array() -> None:
    # voucher.loyalty_card.points_expired example: buckets is an array, the schema says one.
    bucket = {"id": "lopb_1", "bucket": {"total_points": 10}, "status": "ACTIVE"}
    for buckets in ([bucket], bucket):
        data = {"points": 10, "buckets": buckets}
        typed = deliver(envelope("voucher.loyalty_card.points_expired", data)).data
        assert isinstance(typed, webhook_data.EventVoucherLoyaltyCardPointsExpiredData)
        assert msgspec.to_builtins(typed.buckets) == buckets


def test_null_anywhere_is_valid() -> None:
    # Real payloads carry null where the docs say string (customer.email and the like).
    data = webhook_samples.example("voucher.published")
    data["customer"]["email"] = None
    data["voucher"] = None
    assert deliver(envelope("voucher.published", data)).schema_valid


# --- spellings -------------------------------------------------------------------------


@pytest.mark.parametrize("alias", sorted(webhook_data.ALIASES))
def test_both_spellings_give_the_canonical_type(alias: str) -> None:
    canonical = webhook_data.ALIASES[alias]
    for spelled in (alias, canonical):
        delivery = deliver(envelope(spelled, webhook_samples.example(canonical)))
        assert delivery.type == canonical
        assert delivery.schema_valid
        assert published(delivery)["type"] == canonical


def test_business_validation_rule_from_a_project_webhook_either_way() -> None:
    short = envelope("bus_val_rule.created", distribution=False)
    assert short["type"] == "bus_val_rule.created"
    delivery = deliver(short)
    assert delivery.type == "business_validation_rule.created"
    assert delivery.webhook_type == "bus_val_rule.created"


# --- the event type rule -------------------------------------------------------------


def test_distribution_type_is_the_users_own_name_and_may_hold_any_text() -> None:
    payload = envelope("customer.order.paid", event_name="Order paid → CRM (prod) ✓")
    delivery = deliver(payload)
    assert delivery.type == "customer.order.paid"
    assert published(delivery)["webhook_type"] == "Order paid → CRM (prod) ✓"


def test_project_webhook_type_is_the_envelope_type() -> None:
    payload = envelope("voucher.published")
    payload["event"]["type"] = "customer.publication.succeeded"  # ignored for project webhooks
    assert deliver(payload).type == "voucher.published"


def test_event_id_falls_back_to_the_envelope_id() -> None:
    payload = envelope("voucher.published")
    del payload["event"]
    delivery = deliver(payload)
    assert delivery.id == payload["id"]
    assert delivery.request_id is None


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


# --- malformed envelopes: refused ------------------------------------------------------


def _refused(payload: dict[str, Any]) -> str:
    with pytest.raises(Unpublishable) as caught:
        inbound.decode(encode(payload))
    assert caught.value.reason == "invalid_payload"  # dead-lettered, answered 200
    with pytest.raises(webhooks.MalformedEnvelope) as kind:
        webhooks.decode_envelope(encode(payload))  # the envelope kind's own decoder
    assert caught.value.detail == str(kind.value)
    return caught.value.detail


def test_no_id() -> None:
    payload = envelope("voucher.published")
    del payload["id"]
    assert _refused(payload) == "Object missing required field `id`"
    assert _refused(payload | {"id": ""}) == "Object missing required field `id`"
    assert _refused(payload | {"id": 42}) == "Expected `str | null`, got `int` - at `$.id`"


def test_no_type() -> None:
    payload = envelope("voucher.published")
    del payload["type"]
    assert _refused(payload) == "Object missing required field `type`"
    distribution = envelope("customer.order.paid")
    del distribution["event"]["type"]
    assert _refused(distribution) == "Object missing required field `type` - at `$.event`"
    distribution = envelope("customer.order.paid")
    del distribution["type"]
    assert _refused(distribution) == "Object missing required field `type`"


@pytest.mark.parametrize(
    ("data", "kind"),
    [([], "array"), ("x", "str"), (None, "null"), (1, "int"), (1.5, "float"), (True, "bool")],
)
def test_data_not_an_object(data: Any, kind: str) -> None:
    payload = envelope("voucher.published") | {"data": data}
    assert _refused(payload) == f"Expected `object`, got `{kind}` - at `$.data`"


@pytest.mark.parametrize(
    "type_",
    ["voucher published", "voucher/published", "vöucher.published", "a" * 201, "x\n", "{x}"],
)
def test_event_type_outside_the_allowed_characters(type_: str) -> None:
    project = envelope(type_, {}, distribution=False)
    assert _refused(project).endswith("- at `$.type`")
    distribution = envelope(type_, {}, distribution=True)
    assert _refused(distribution).endswith("- at `$.event.type`")


def test_event_type_of_200_characters_is_fine() -> None:
    type_ = "a." * 99 + "ab"
    assert len(type_) == 200
    assert deliver(envelope(type_, {}, distribution=False)).type == type_


def test_envelope_field_of_the_wrong_type() -> None:
    payload = envelope("voucher.published") | {"source": "webhook"}
    assert _refused(payload) == "Expected `object | null`, got `str` - at `$.source`"


_PatternIdText = Annotated[
    str, msgspec.Meta(max_length=actions.MAX_ID_LENGTH, pattern=actions.ID_TEXT_PATTERN)
]


class _PatternEvent(msgspec.Struct):
    id: _PatternIdText | None = None
    group_id: _PatternIdText | None = None


class _PatternIds(msgspec.Struct):
    """The envelope's ids as checked until issue 15: msgspec's ``Meta(pattern=...)``."""

    id: _PatternIdText | None = None
    event: _PatternEvent | None = None


@settings(max_examples=300, deadline=None)
@given(
    value=st.sampled_from(["", "a\n", "\x1b[2J", "a\u202e", "a\u00a0", "日本", "e" * 257])
    | st.text(max_size=8),
    field=st.sampled_from(["id", "event.id", "event.group_id"]),
)
def test_ids_are_refused_as_the_pattern_refused_them(value: str, field: str) -> None:
    payload = envelope("voucher.published")
    if field == "id":
        payload["id"] = value
    else:
        payload["event"][field.removeprefix("event.")] = value
    body = encode(payload)
    try:
        msgspec.json.decode(body, type=_PatternIds)
    except msgspec.ValidationError as error:
        assert _refused(payload) == str(error)
        return
    if field == "id" and not value:
        assert _refused(payload) == "Object missing required field `id`"
    else:
        assert deliver(body).digest


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


# --- properties -------------------------------------------------------------------------


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


@settings(max_examples=200, deadline=None)
@given(type_=st.text(max_size=210), distribution=st.booleans())
def test_any_event_type_is_accepted_or_refused_as_malformed(type_: str, distribution: bool) -> None:
    body = encode(envelope(type_, {"a": 1}, distribution=distribution))
    if type_ in actions.BY_TYPE and not distribution:
        # An async action type: decoded as an async action (this one lacks its fields).
        with pytest.raises(Unpublishable) as caught:
            inbound.decode(body)
        assert "required field `status`" in caught.value.detail
        return
    try:
        result = inbound.decode(body)
    except Unpublishable:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        assert not type_ or len(type_) > 200 or not set(type_) <= allowed
        return
    assert isinstance(result, webhooks.WebhookDelivery)
    assert result.type == webhook_data.ALIASES.get(type_, type_)
