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
