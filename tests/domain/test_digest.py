"""The dedup digest of a webhook delivery: one fixed function of the body (issue 15).

Digests are stored in Redis dedup keys, so the same body must give the same
digest in every version: otherwise a resend across an upgrade is answered as a
conflict. ``reference`` is the function docs/contract.md describes (blake2b-128
of the event type, the event id and the data's JSON values as msgspec encodes
them); a faster ``webhooks.decode`` must still compute exactly it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from service.domain import webhook_samples, webhooks

EVENT_ID = "evt_digest"


def reference(type_: str, id_: str, data: bytes) -> str:
    digest = hashlib.blake2b(f"{type_}\0{id_}\0".encode(), digest_size=16)
    digest.update(msgspec.json.encode(msgspec.json.decode(data)))
    return digest.hexdigest()


def body(type_: str, data: bytes) -> bytes:
    """A project-webhook envelope of ``type_`` around ``data``, byte for byte."""
    head = {"id": "whs_digest", "type": type_, "event": {"id": EVENT_ID, "type": type_}}
    return msgspec.json.encode(head)[:-1] + b',"data":' + data + b"}"


def digest(type_: str, data: bytes) -> str:
    delivery = webhooks.decode_envelope(body(type_, data))
    assert isinstance(delivery, webhooks.WebhookDelivery)
    assert delivery.type == type_
    return delivery.digest


# Values whose spelling JSON leaves open, each as msgspec's encode writes it and in
# other spellings that mean the same.
SPELLINGS: dict[bytes, list[bytes]] = {
    b"1.5": [b"1.50", b"15e-1", b"0.15E+1"],
    b"100.0": [b"1e2", b"1E+2", b"100.00"],
    b"0": [b"-0"],
    b"-0.0": [b"-0.0e0"],
    b"18446744073709551616": [],  # beyond 64 bits
    b"-9223372036854775809": [],
    b"1" + b"0" * 40: [],
    b'"\xc3\xa9"': [b'"\\u00e9"', b'"\\u00E9"'],
    b'"a/b"': [b'"a\\/b"'],
    b'"\\n\\t\\\\\\""': [b'"\\u000a\\u0009\\u005c\\u0022"'],
    b'"\\u001f\\u0000"': [b'"\\u001F\\u0000"'],
    b'"\x7f\xc2\x85\xe2\x80\xa8\xe2\x80\xa9"': [b'"\\u007f\\u0085\\u2028\\u2029"'],
    b'"\xf0\x9f\x98\x80"': [b'"\\ud83d\\ude00"'],
    b"[[],[[1,2],[3]],{}]": [b"[ [ ] , [[1 ,2],\n[3]] ,{ } ]"],
}


def _adversarial(example: dict[str, Any]) -> Iterator[bytes]:
    compact = msgspec.json.encode(example)
    yield compact
    yield json.dumps(example, indent=2).encode()  # pretty, non-ASCII escaped
    yield json.dumps(example, ensure_ascii=False, separators=(", ", " : ")).encode()
    yield b'{"dup":1,"nested":{"k":[1],"k":{"k":2}},"dup":"last",' + compact[1:]
    for key in list(example)[:1]:  # a field of the schema again, last: the last one counts
        yield compact[:-1] + b"," + msgspec.json.encode(key) + b':"again"}'
    for canonical, others in SPELLINGS.items():
        for value in (canonical, *others):
            yield b'{"x":' + value + b',"y":[' + value + b"]," + compact[1:]
    yield b'{"created_at":5,' + compact[1:]  # drift: not the schema's type


CASES = [
    (type_, data)
    for type_ in webhook_samples.TYPES
    for data in _adversarial(webhook_samples.example(type_))
]


def test_every_vendor_example_and_variant_has_the_reference_digest() -> None:
    for type_, data in CASES:
        assert digest(type_, data) == reference(type_, EVENT_ID, data), (type_, data)


@pytest.mark.parametrize("type_", ["voucher.published", "voucher.teleported", "my_own-event.1"])
def test_known_and_unknown_types_have_the_reference_digest(type_: str) -> None:
    data = b'{"a":1.50,"b":"\\u00e9","b":"\xc3\xa9","c":[-0,1e2,[{}]],"d":"\\u2028"}'
    assert digest(type_, data) == reference(type_, EVENT_ID, data)


def test_spellings_of_one_value_are_one_digest() -> None:
    for canonical, others in SPELLINGS.items():
        data = b'{"x":' + canonical + b"}"
        assert {digest("voucher.published", b'{"x":' + o + b"}") for o in others} <= {
            digest("voucher.published", data)
        }


def test_digests_are_pinned() -> None:
    # Stored in Redis dedup keys: these values may never change. The first is
    # blake2b-128 of 'voucher.published\0evt_digest\0{"a":1.5,"b":"é","c":[0,100.0,
    # 18446744073709551616],"d":{"k":2}}' (UTF-8): the values, not their spelling.
    data = b'{"a":1.50,"b":"\\u00e9","c":[-0,1e2,18446744073709551616],"d":{"k":1,"k":2}}'
    assert digest("voucher.published", data) == "b26801cd3877faefaaf62da43d3ca442"
    assert digest("voucher.published", b"{}") == "ae7036885b92072b46d490289a1525db"
