"""The generated webhook data Structs: fresh, one per documented event type, each vendor
example accepted and typed, and the quirks where the examples differ from the schemas."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from service.domain import webhook_data, webhook_samples
from service.domain.webhook_samples import TYPES, envelope
from tests.domain.test_webhooks import deliver, published
from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]

# The vendor examples that do not decode into their own schema, and why. Every
# other example is schema_valid: 71 of 72.
NOT_VALID = {
    # The example's timestamp is "2024-05-13T10: 24: 01.084Z" (spaces inside):
    # a typo in the document, not a shape to widen to.
    "customer.reward_redemptions.completed": (
        "Invalid RFC3339 encoded datetime - at `$.data.voucher.created_at`"
    ),
}


# --- the generated module -------------------------------------------------------


@pytest.mark.spawns
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
