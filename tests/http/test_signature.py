"""Signature verification: raw and compact forms, rotation, hostile headers."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import Secret
from service.domain import samples
from service.http.errors import InvalidSignature
from service.http.signature import Verifier, compact, sign

OLD, NEW = b"old-secret", b"new-secret"


def test_raw_body_signature_verifies() -> None:
    body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))
    Verifier([NEW]).verify(body, [sign(body, NEW)])


def test_pretty_body_signed_over_its_compact_form_verifies() -> None:
    action = samples.sample("CUSTOMERS.IMPORT_CSV", status="FAILED")
    action["result"]["message"] = "2 customer(s)  imported,\n failed: {x: [1, 2]}"
    pretty = json.dumps(action, indent=2).encode()
    compact_form = json.dumps(action, separators=(",", ":")).encode()
    assert compact(pretty) == compact_form
    Verifier([NEW]).verify(pretty, [sign(compact_form, NEW)])


def test_whitespace_inside_strings_is_signed_as_is() -> None:
    body = b'{"a": "x  y"}'
    with pytest.raises(InvalidSignature):
        Verifier([NEW]).verify(body, [sign(b'{"a":"xy"}', NEW)])


def test_rotation_accepts_every_configured_secret() -> None:
    body = b'{"id":"aa_1"}'
    both = Verifier([OLD, NEW])
    both.verify(body, [sign(body, OLD)])
    both.verify(body, [sign(body, NEW)])
    with pytest.raises(InvalidSignature, match="does not match"):
        Verifier([NEW]).verify(body, [sign(body, OLD)])


def test_the_verifier_says_which_project_the_matching_secret_is_bound_to() -> None:
    body = b'{"id": "whs_1", "project_id": "proj_A"}'
    verifier = Verifier([Secret("s-plain"), Secret("s-a", "proj_A"), Secret("s-b", "proj_B")])
    assert verifier.verify(body, [sign(body, b"s-a")]) == "proj_A"
    assert verifier.verify(body, [sign(body, b"s-b")]) == "proj_B"
    assert verifier.verify(body, [sign(body, b"s-plain")]) is None
    # Signed over the compact form: the same answer.
    assert verifier.verify(body, [sign(compact(body) or b"", b"s-b")]) == "proj_B"
    with pytest.raises(InvalidSignature):
        verifier.verify(body, [sign(body, b"s-c")])


def test_uppercase_hex_and_surrounding_spaces_are_tolerated() -> None:
    body = b'{"id":"aa_1"}'
    Verifier([NEW]).verify(body, [f"  {sign(body, NEW).upper()} "])


@pytest.mark.parametrize(
    "header",
    ["", "0", "g" * 64, "é" * 64, "ab" * 33, "ab " * 32, "\x00" * 64, "a" * 16384],
)
def test_malformed_headers_are_invalid_never_a_crash(header: str) -> None:
    with pytest.raises(InvalidSignature):
        Verifier([NEW]).verify(b"{}", [header])


def test_missing_and_repeated_headers() -> None:
    body = b"{}"
    with pytest.raises(InvalidSignature, match="missing"):
        Verifier([NEW]).verify(body, [])
    with pytest.raises(InvalidSignature, match="expected one"):
        Verifier([NEW]).verify(body, [sign(body, NEW)] * 2)


def test_a_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError):
        Verifier([])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 0, 1, 2, 4]), ascii_only=st.booleans())
def test_any_formatting_verifies_against_the_compact_signature(
    value: Any, indent: int | None, ascii_only: bool
) -> None:
    compact_form = json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only).encode()
    formatted = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    Verifier([NEW]).verify(formatted, [sign(compact_form, NEW)])


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=256), key=st.binary(min_size=1, max_size=64))
def test_a_signature_only_verifies_with_its_key(body: bytes, key: bytes) -> None:
    Verifier([key]).verify(body, [sign(body, key)])
    if key != NEW:
        with pytest.raises(InvalidSignature):
            Verifier([NEW]).verify(body, [sign(body, key)])
