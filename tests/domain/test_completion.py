"""``decode_event`` takes an entry's ``event`` field or its whole field mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from service import decode_event
from service.domain import actions, completion, samples


def _event_json() -> bytes:
    action = actions.decode(msgspec.json.encode(samples.sample("VOUCHERS.IMPORT")))
    return completion.encode_event(completion.from_action(action, datetime.now(UTC)))


@pytest.mark.parametrize(
    "shape",
    [
        lambda data: data,
        lambda data: data.decode(),
        lambda data: {b"type": b"VOUCHERS.IMPORT", b"event": data},
        lambda data: {"type": "VOUCHERS.IMPORT", "event": data.decode()},
    ],
    ids=["bytes", "str", "bytes-mapping", "str-mapping"],
)
def test_decode_event_takes_the_field_or_the_entry(shape: object) -> None:
    data = _event_json()
    event = decode_event(shape(data))  # type: ignore[operator]
    assert event.type == "VOUCHERS.IMPORT"
    assert isinstance(event.result, actions.VoucherImportResult)


def test_an_entry_without_event_is_a_validation_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="event"):
        decode_event({b"type": b"VOUCHERS.IMPORT"})


@pytest.mark.parametrize(
    ("type_", "result_class", "record"),
    [
        ("VOUCHERS.IMPORT", actions.VoucherImportResult, {"code": "C1", "reason": "taken"}),
        ("ORDERS.IMPORT", actions.OrderImportResult, {"source_id": "o1", "reason": "bad"}),
    ],
)
def test_failed_sent_as_one_object_is_published_and_read_back_as_a_list(
    type_: str, result_class: type, record: dict[str, str]
) -> None:
    # The vendor documents `failed` as an object and sends an array; both arrive.
    body = {"id": "aa_1", "type": type_, "status": "DONE", "result": {"failed": record}}
    action = actions.decode(msgspec.json.encode(body))
    data = completion.encode_event(completion.from_action(action, datetime.now(UTC)))
    assert msgspec.json.decode(data)["result"]["failed"] == [record]
    event = decode_event(data)
    assert type(event.result) is result_class, "the public class, not the inbound one"
    assert isinstance(event.result.failed, list) and len(event.result.failed) == 1
    [field] = [f for f in msgspec.structs.fields(result_class) if f.name == "failed"]
    listed, none = field.type.__args__
    assert (listed.__origin__, none) == (list, type(None)), "typed list[...] | None"
