"""Workflows webhooks (Loyalty v2): the generated data Structs and their event types.

The examples are the two of the vendor's Workflows webhook page
(``scripts/vendor/workflow-webhook-examples.json``).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from service.domain import event_types, inbound, webhook_data, webhooks, workflow_data
from service.domain.event_types import is_known
from service.domain.webhook_samples import envelope as samples_envelope
from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "scripts" / "vendor"
RECEIVED = datetime(2026, 8, 21, 9, 16, tzinfo=UTC)
EXAMPLES: dict[str, dict[str, Any]] = json.loads(
    (VENDOR / "workflow-webhook-examples.json").read_text(encoding="utf-8")
)


@pytest.mark.spawns
def test_generated_file_is_up_to_date() -> None:
    generator = load_script("gen_workflow_types")
    for name, content in generator.generate(generator.SPEC).items():
        stale = (ROOT / "service" / "domain" / name).read_text(encoding="utf-8") != content
        assert not stale, f"{name} is stale: run python scripts/gen_workflow_types.py"


def test_the_transaction_types_are_the_card_transaction_enum() -> None:
    spec = json.loads((VENDOR / "loyalties-v2.json").read_text(encoding="utf-8"))
    enum = spec["components"]["schemas"]["CardTransaction"]["properties"]["type"]["enum"]
    assert set(enum) == workflow_data.TRANSACTION_TYPES
    assert len(enum) == 14
    for type_ in enum:
        assert workflow_data.workflow_data_type(type_) is workflow_data.CardTransactionData


def test_66_activity_types_as_the_vendor_documents_66_activity_pages() -> None:
    activities = set(workflow_data.BY_TYPE) - workflow_data.TRANSACTION_TYPES
    assert len(activities) == 66
    assert all(type_.startswith("vl.") for type_ in activities)
    families = {type_.split(".")[1] for type_ in activities}
    assert families == {
        "member",
        "program",
        "card",
        "card_definition",
        "earning_rule",
        "reward",
        "benefit",
        "tier_structure",
    }
    assert workflow_data.workflow_data_type("vl.program.reward.assigned") is (
        workflow_data.ProgramActivityData
    )
    assert workflow_data.workflow_data_type("vl.tier_structure.tier.created") is (
        workflow_data.TierStructureActivityData
    )
    # No Workflows type shares its name with a webhook event type.
    assert not set(workflow_data.BY_TYPE) & set(webhook_data.BY_TYPE)


def test_undocumented_types_have_no_struct() -> None:
    assert workflow_data.workflow_data_type("vl.member.renamed") is None
    assert workflow_data.workflow_data_type("POINTS_GIFTED") is None
    assert workflow_data.workflow_data_type("voucher.published") is None


@pytest.mark.parametrize("type_", sorted(EXAMPLES))
def test_the_vendors_examples_decode_into_their_struct(type_: str) -> None:
    envelope = EXAMPLES[type_]
    assert envelope["source"]["object"] == "workflow"
    struct = workflow_data.workflow_data_type(envelope["type"])
    assert struct is not None
    data = msgspec.convert(envelope["data"], struct)
    assert isinstance(data, workflow_data.WorkflowData)
    # Every field the example holds is a documented field, at every depth: none is
    # typed away as unknown.
    assert undocumented(data, envelope["data"]) == []


def undocumented(typed: Any, sent: Any, path: str = "$") -> list[str]:
    """Paths of the keys of ``sent`` that ``typed`` (its Struct) has no field for."""
    if not isinstance(typed, msgspec.Struct) or not isinstance(sent, dict):
        return []
    fields = {f.encode_name: f.name for f in msgspec.structs.fields(typed)}
    missing = [f"{path}.{key}" for key in sent if key not in fields]
    for key, attr in fields.items():
        if key in sent:
            missing += undocumented(getattr(typed, attr), sent[key], f"{path}.{key}")
    return missing


def test_a_points_earned_transaction_is_typed() -> None:
    data = msgspec.convert(EXAMPLES["POINTS_EARNED"]["data"], workflow_data.CardTransactionData)
    transaction = data.transaction
    assert transaction is not None and transaction.details is not None
    assert (transaction.type, transaction.status) == ("POINTS_EARNED", "APPROVED")
    assert transaction.details.points is not None
    assert transaction.details.points.total == 250
    assert str(transaction.details.points.expiration_date) == "2027-08-20"


def test_a_member_activity_carries_member_and_program_snapshots() -> None:
    data = msgspec.convert(EXAMPLES["vl.member.created"]["data"], workflow_data.MemberActivityData)
    assert data.member is not None and data.program is not None
    assert (data.member.id, data.member.status) == ("lmbr_91f6b2e84a37", "ACTIVE")
    # Documented as a date-time, sent as a date (the generator's QUIRKS).
    assert data.program.start_date == "2026-01-01"


def test_data_off_its_schema_is_refused_by_the_struct_with_its_path() -> None:
    data = json.loads(json.dumps(EXAMPLES["POINTS_EARNED"]["data"]))
    data["transaction"]["details"]["points"]["total"] = "250 points"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.transaction\.details\.points\.total"):
        msgspec.convert(data, workflow_data.CardTransactionData)


# --- through the envelope decoder --------------------------------------------------


def test_workflow_envelopes_decode_valid_and_typed() -> None:
    for type_, envelope in EXAMPLES.items():
        delivery = inbound.decode(msgspec.json.encode(envelope))
        assert isinstance(delivery, webhooks.WebhookDelivery)
        assert (delivery.type, delivery.id) == (type_, envelope["event"]["id"])
        assert delivery.schema_valid, delivery.schema_error
        assert type(delivery.data) is workflow_data.workflow_data_type(type_)
        event = delivery.event(RECEIVED)
        assert event.source is not None and event.source.object == "workflow"
        decoded = webhooks.decode_webhook_event(webhooks.encode_event(event))
        assert type(decoded.data) is type(delivery.data)
        assert decoded.data == delivery.data


def test_an_undocumented_workflows_type_is_drift() -> None:
    envelope = copy.deepcopy(EXAMPLES["vl.member.created"])
    envelope["type"] = envelope["event"]["type"] = "vl.member.renamed"
    delivery = inbound.decode(msgspec.json.encode(envelope))
    assert isinstance(delivery, webhooks.WebhookDelivery)
    assert delivery.type == "vl.member.renamed"
    assert not delivery.schema_valid and delivery.data is None
    assert delivery.schema_error == (
        "Unknown Workflows event type `vl.member.renamed`: no documented schema"
    )


def test_workflows_data_off_its_schema_is_drift_with_its_path() -> None:
    envelope = copy.deepcopy(EXAMPLES["POINTS_EARNED"])
    envelope["data"]["transaction"]["details"]["points"]["total"] = "250 points"
    delivery = inbound.decode(msgspec.json.encode(envelope))
    assert isinstance(delivery, webhooks.WebhookDelivery)
    assert delivery.schema_error == (
        "Expected `float | null`, got `str` - at `$.data.transaction.details.points.total`"
    )


def test_workflows_types_are_typed_only_when_a_workflow_sent_them() -> None:
    # The same type name from a project webhook is not a Workflows event.
    envelope = copy.deepcopy(EXAMPLES["POINTS_EARNED"])
    envelope["source"]["object"] = "webhook"
    delivery = inbound.decode(msgspec.json.encode(envelope))
    assert isinstance(delivery, webhooks.WebhookDelivery)
    assert delivery.schema_error == "Unknown event type `POINTS_EARNED`: no documented schema"


@pytest.mark.parametrize("type_", webhook_data.SCHEMALESS_TYPES)
def test_schemaless_project_types_are_known_valid_and_untyped(type_: str) -> None:
    data = {"campaign": {"id": "camp_1", "name": "Summer"}}
    delivery = inbound.decode(msgspec.json.encode(samples_envelope(type_, data)))
    assert isinstance(delivery, webhooks.WebhookDelivery)
    assert delivery.envelope.source is not None
    assert delivery.envelope.source.object == "webhook"  # project settings send these
    assert delivery.type == type_ and is_known(type_)
    assert delivery.schema_valid and delivery.schema_error is None and delivery.data is None
    decoded = webhooks.decode_webhook_event(webhooks.encode_event(delivery.event(RECEIVED)))
    assert decoded.data == data and decoded.schema_valid


def test_17_schemaless_types_and_customer_updated_from_project_settings() -> None:
    assert len(webhook_data.SCHEMALESS_TYPES) == 17
    assert "customer.updated" in webhook_data.PROJECT_SETTINGS_TYPES
    delivery = inbound.decode(msgspec.json.encode(samples_envelope("customer.updated")))
    assert isinstance(delivery, webhooks.WebhookDelivery)
    assert delivery.envelope.source is not None
    assert delivery.envelope.source.object == "webhook"
    assert delivery.schema_valid and type(delivery.data) is webhook_data.EventCustomerUpdatedData
    assert len(event_types.KNOWN) == len(set(event_types.KNOWN)) == 72 + 17 + 80
