"""The one entry of inbound decoding: each kind of body classified once, by what it is.

An authentic body is an async action, a webhook envelope, a custom body (any
other JSON), or not publishable (``Unpublishable``: the receiver keeps it as a
dead letter under its reason).
"""

from __future__ import annotations

import gc
from typing import Any

import msgspec
import pytest

from service.domain import actions, custom, inbound, samples, webhooks
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


# --- custom bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"customer": "{{customer.name}}", "code": "SUMMER-1"}',  # a Payload Designer body
        encode(samples.sample("VOUCHERS.IMPORT") | {"type": "LOYALTIES.MEMBERS_IMPORT"}),
        b'{"id": "x", "data": {"a": 1}}',  # data and id, but no source or event
        b"[1, 2, 3]",
        b'"just text"',
        b"42",
        b"null",
    ],
    ids=["designer", "unknown-type", "data-no-source", "array", "string", "number", "null"],
)
def test_other_json_is_a_custom_body(body: bytes) -> None:
    decoded = inbound.decode(body)
    assert isinstance(decoded, custom.CustomBody)
    assert (decoded.type, decoded.body, decoded.request_id) == ("custom", body, None)
    assert decoded.id == decoded.digest


def digest(body: bytes) -> str:
    decoded = inbound.decode(body)
    assert isinstance(decoded, custom.CustomBody)
    return decoded.digest


def test_a_custom_body_is_identified_by_its_json_values() -> None:
    # The envelope's rules: whitespace, string escapes and number notation do not count.
    one = digest(b'{"a":1.5,"b":"\\u00e9","c":[100.0]}')
    assert digest(b'{ "a" : 15e-1,\n "b": "\xc3\xa9", "c": [1e2] }') == one
    assert digest(b'{"b":"\\u00e9","a":1.5,"c":[100.0]}') != one, "key order counts, as before"
    assert digest(b'{"a":1.5,"b":"\\u00e9","c":[100.1]}') != one
    # Kept in Redis dedup keys: these values may never change. The last is blake2b-128
    # of "custom\0\0{}": the type, an empty id, the values as msgspec encodes them.
    assert one == webhooks.content_digest("custom", "", {"a": 1.5, "b": "\u00e9", "c": [100.0]})
    assert digest(b"{}") == "360bdbff580e346a6dfde49f583acd41"


def test_no_envelope_may_take_the_custom_stream() -> None:
    refused = unpublishable(encode(envelope("custom", {}, distribution=False)))
    assert refused.reason == "invalid_payload"
    assert refused.detail.endswith("the stream of custom bodies - at `$.type`")


def test_every_kind_says_its_type_id_request_id_and_project() -> None:
    action = samples.sample("VOUCHERS.IMPORT")
    sent = envelope("voucher.published", group_id="v-1")
    kinds = [
        (action, ("VOUCHERS.IMPORT", action["id"], action["request_id"], None)),
        (sent, ("voucher.published", sent["event"]["id"], "v-1", sent["project_id"])),
    ]
    for payload, said in kinds:
        decoded = inbound.decode(encode(payload))
        assert (decoded.type, decoded.id, decoded.request_id, decoded.project_id) == said
    body = inbound.decode(b"[1]")
    assert (body.type, body.request_id, body.project_id) == ("custom", None, None)
