"""The one entry of inbound decoding: each kind of body classified once, by what it is.

An authentic body is an async action, a webhook envelope, or not publishable
(``Unpublishable``: the receiver keeps it as a dead letter under its reason).
"""

from __future__ import annotations

import gc
from typing import Any

import msgspec
import pytest

from service.domain import actions, inbound, samples, webhooks
from service.domain.inbound import Unpublishable
from service.domain.webhook_samples import envelope


def encode(payload: Any) -> bytes:
    return msgspec.json.encode(payload)


def unpublishable(body: bytes) -> Unpublishable:
    with pytest.raises(Unpublishable) as caught:
        inbound.decode(body)
    return caught.value


@pytest.mark.parametrize("type_", actions.TYPES)
def test_async_actions_decode_as_their_kind_decodes_them(type_: str) -> None:
    body = encode(samples.sample(type_))
    assert inbound.decode(body) == actions.decode(body)


def test_an_envelope_decodes_as_its_kind_decodes_it() -> None:
    body = encode(envelope("voucher.published"))
    assert inbound.decode(body) == webhooks.decode_envelope(body)


def test_known_async_action_type_with_data_stays_an_async_action() -> None:
    body = encode(samples.sample("VOUCHERS.IMPORT") | {"data": {}})
    assert isinstance(inbound.decode(body), actions.VouchersImport)


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        # Issue 25: each was a 422 that Voucherify retried 12 times, then it disabled the webhook.
        ({"progress": "50%"}, "Expected `int | null`, got `str` - at `$.progress`"),
        ({"id": "a" * 300}, "Expected `str` of length <= 256 - at `$.id`"),
        ({"status": "PAUSED"}, "at `$.status`"),
    ],
)
def test_an_invalid_async_action_is_unpublishable_naming_the_path(
    change: dict[str, Any], detail: str
) -> None:
    body = encode(samples.sample("VOUCHERS.IMPORT", status="IN_PROGRESS") | change)
    refused = unpublishable(body)
    assert (refused.reason, refused.type_label) == ("invalid_payload", "VOUCHERS.IMPORT")
    assert refused.detail.endswith(detail)


def test_a_malformed_envelope_is_unpublishable() -> None:
    body = encode(envelope("voucher.published") | {"id": "w" * 300})
    refused = unpublishable(body)
    assert refused.reason == "invalid_payload"
    assert refused.detail == "Expected `str` of length <= 256 - at `$.id`"


@pytest.mark.parametrize(
    "body",
    [
        b"this is plain text",
        b'{"id": "whs_1", "data": {',
        encode(envelope("voucher.published")).replace(b'"proj_', b'"\xff\xfe', 1),
        encode(envelope("voucher.published")).replace(b'"cust_', b'"\xff\xfe', 1),
        b'{"id":"whs_1","type":"voucher.published","event":{},"data":{"a":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}",
    ],
    ids=["text", "truncated", "utf8-envelope", "utf8-data", "nested"],
)
def test_what_is_not_json_is_malformed(body: bytes) -> None:
    assert unpublishable(body).reason == "malformed_json"


def test_decoding_leaves_no_reference_cycle() -> None:
    # A cycle through the async action's error kept each envelope alive until the
    # cyclic GC ran (issue 15): memory, and 1 us more per envelope.
    body = encode(envelope("voucher.published"))
    inbound.decode(body)
    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            inbound.decode(body)
        assert gc.collect() == 0
    finally:
        gc.enable()
