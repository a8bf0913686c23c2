"""service.testing.sample: the typed event a handler receives, for every type, from the
samples of `fanout send`, with overrides; and the same event the real receiver publishes."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest
from redis.asyncio import Redis

from service import CompletionEvent, CustomEvent, WebhookEvent, decode_event
from service.cli import send
from service.domain import actions, sample_bodies
from service.domain.webhook_data import ALIASES, SCHEMALESS_TYPES
from service.results import VoucherImportResult
from service.testing import SAMPLE_TYPES, ActionType, SampleRefused, entry_fields, from_body, sample
from service.webhook_data import EventVoucherPublishedData
from service.workflow_data import CardTransactionData, ProgramActivityData
from tests.support.http import post


def test_every_type_has_a_typed_sample_that_survives_its_entry() -> None:
    # 22 async actions, 72 documented, 17 schema-less and 80 Workflows event types, custom
    assert len(SAMPLE_TYPES) == len(set(SAMPLE_TYPES)) == 22 + 72 + 17 + 80 + 1
    for type_ in (*SAMPLE_TYPES, *ALIASES):
        event = sample(type_)
        assert decode_event(entry_fields(event)) == event, type_
        if type_ in actions.BY_TYPE:
            assert isinstance(event, CompletionEvent) and event.status == "DONE"
        elif type_ == "custom":
            assert isinstance(event, CustomEvent)
        else:
            assert isinstance(event, WebhookEvent), type_
            # the vendor's example of this one has a malformed timestamp (docs/contract.md)
            assert event.schema_valid == (type_ != "customer.reward_redemptions.completed")
            assert event.type == ALIASES.get(type_, type_)
            # typed data, except the types with no documented schema
            assert isinstance(event.data, dict) == (
                type_ in SCHEMALESS_TYPES or not event.schema_valid
            ), type_


def test_fanout_send_takes_the_same_samples() -> None:
    assert send.SAMPLE_TYPES == sample_bodies.ACCEPTED
    assert set(SAMPLE_TYPES) | set(ALIASES) == set(send.SAMPLE_TYPES)


def test_overrides_set_what_they_name() -> None:
    failed = sample("VOUCHERS.IMPORT", status="FAILED", id="aa_1", request_id="v-1")
    assert (failed.type, failed.status, failed.id, failed.request_id) == (
        "VOUCHERS.IMPORT",
        "FAILED",
        "aa_1",
        "v-1",
    )
    assert isinstance(failed.result, VoucherImportResult) and failed.result.done_count == 0
    progress = sample("ORDERS.IMPORT", status="IN_PROGRESS", progress=40)
    assert (progress.status, progress.progress, progress.result) == ("IN_PROGRESS", 40, None)
    result = sample("VOUCHERS.IMPORT", result={"done_count": 3, "failed": []})
    assert result.done_count == 3 and result.result == VoucherImportResult(done_count=3, failed=[])

    published = sample("voucher.published", id="evt_1", request_id="v-2", project_id="proj_x")
    assert isinstance(published, WebhookEvent)
    assert (published.id, published.request_id, published.project_id) == ("evt_1", "v-2", "proj_x")
    assert isinstance(published.data, EventVoucherPublishedData)
    data = sample("voucher.published", data={"voucher": {"code": "SPRING"}})
    assert isinstance(data.data, EventVoucherPublishedData) and data.data.voucher is not None
    assert data.data.voucher.code == "SPRING" and data.data.customer is None
    drift = sample("voucher.published", data={"voucher": "not an object"})
    assert isinstance(drift, WebhookEvent) and drift.schema_valid is False
    assert drift.data == {"voucher": "not an object"}
    assert drift.schema_error is not None and "$.data.voucher" in drift.schema_error

    earned = sample("POINTS_SPENT_ON_ORDER")
    assert isinstance(earned, WebhookEvent) and isinstance(earned.data, CardTransactionData)
    assert earned.data.transaction is not None
    assert earned.data.transaction.type == "POINTS_SPENT_ON_ORDER"
    program = sample("vl.program.created")
    assert isinstance(program, WebhookEvent) and isinstance(program.data, ProgramActivityData)

    designed = sample("custom", body=[1, {"a": "b"}])
    assert designed.body == [1, {"a": "b"}]
    assert sample("custom", body={"x": 1}).id == sample("custom", body={"x": 1}).id


def test_an_override_the_type_has_no_use_for_is_refused() -> None:
    with pytest.raises(TypeError, match=r"data= does not apply to 'VOUCHERS.IMPORT'"):
        sample("VOUCHERS.IMPORT", data={})
    with pytest.raises(TypeError, match=r"status= does not apply to 'voucher.published'"):
        sample("voucher.published", status="FAILED")
    with pytest.raises(TypeError, match=r"id= does not apply to 'custom'"):
        sample("custom", id="x")
    with pytest.raises(KeyError, match=r"no sample of 'voucher\.eaten'"):
        sample("voucher.eaten")


def test_a_sample_the_service_would_not_publish_is_refused_with_its_path() -> None:
    with pytest.raises(SampleRefused, match=r"invalid_payload: .* - at `\$.id`"):
        sample("VOUCHERS.IMPORT", id="a" * 257)
    with pytest.raises(SampleRefused, match=r"invalid_payload: .*\$.result"):
        sample("VOUCHERS.IMPORT", result={"done_count": "forty"})


@pytest.mark.parametrize(
    "type_",
    ["VOUCHERS.IMPORT", "voucher.published", "POINTS_EARNED", "customer.confirmed", "custom"],
)
async def test_the_sample_is_the_entry_the_real_receiver_publishes(
    type_: str, http: object, redis: Redis
) -> None:
    # The body of a sample posted to the real receiver: the entry it publishes is the one
    # service.testing makes of that body, but for the time the receiver received it.
    body = sample_bodies.body(type_)
    response = await post(http, body)  # type: ignore[arg-type]
    assert response.status_code == 202, response.text
    [(_, fields)] = await redis.xrange(response.json()["stream"])
    made = from_body(body)
    published = decode_event(fields)
    assert type(published) is type(made)
    assert msgspec.structs.replace(published, received_at=made.received_at) == made
    made_fields = entry_fields(made)
    assert made_fields.keys() == fields.keys()
    assert {k: v for k, v in made_fields.items() if k != b"event"} == {
        k: v for k, v in fields.items() if k != b"event"
    }
    # The event's JSON byte for byte (a webhook's data as sent), but for received_at
    made_json, sent_json = made_fields[b"event"], fields[b"event"]
    made_time, sent_time = (
        f'"received_at":"{msgspec.json.decode(j)["received_at"]}"'.encode()
        for j in (made_json, sent_json)
    )
    assert made_json.replace(made_time, b"") == sent_json.replace(sent_time, b"")


def test_the_action_type_literal_names_every_async_action_type() -> None:
    # ActionType is written out for type checkers; the one list is the AnyAction union.
    assert sorted(get_args(ActionType)) == sorted(actions.TYPES)
