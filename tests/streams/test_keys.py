"""Keys: different deliveries never share a key, whatever their ids hold."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from service.streams.keys import Keys, part
from service.streams.records import field

keys = Keys("p")
text = st.text(max_size=12)
progress = st.none() | st.integers(-5, 200)


@given(st.tuples(text, text), st.tuples(text, text))
def test_completion_keys_differ_when_id_or_request_id_differ(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    assert (keys.seen("T", *a) == keys.seen("T", *b)) == (a == b)


@given(st.tuples(text, text, text, progress), st.tuples(text, text, text, progress))
def test_progress_keys_differ_when_any_part_differs(
    a: tuple[str, str, str, int | None], b: tuple[str, str, str, int | None]
) -> None:
    assert (keys.progress_seen("T", *a) == keys.progress_seen("T", *b)) == (a == b)


@given(st.tuples(text, text), st.tuples(text, text))
def test_webhook_event_keys_differ_when_id_or_request_id_differ(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    assert (keys.event_seen("t", *a) == keys.event_seen("t", *b)) == (a == b)


@given(text, text)
def test_done_markers_differ_per_id(a: str, b: str) -> None:
    assert (keys.done("T", a) == keys.done("T", b)) == (a == b)


def test_the_collisions_of_the_issue_are_gone() -> None:
    assert keys.seen("T", "aa_col:v-2", "x") != keys.seen("T", "aa_col", "v-2:x")
    assert keys.progress_seen("T", "a:b", "", "IN_PROGRESS", 5) != keys.progress_seen(
        "T", "a", "b:", "IN_PROGRESS", 5
    )
    # An empty id and an absent progress are parts of their own, not nothing.
    assert keys.done("T", "") != keys.done("T", "0.")
    assert keys.progress_seen("T", "a", "", "S", None) != keys.progress_seen("T", "a", "", "S", 0)


def test_parts_are_length_prefixed_in_bytes() -> None:
    assert part("aa_1") == "4.aa_1"
    assert part("") == "0."
    assert part("é") == "2.é"
    assert keys.seen("VOUCHERS.IMPORT", "aa_1", "v-1") == "p:{VOUCHERS.IMPORT}:seen:4.aa_1:3.v-1"


@given(st.sampled_from(["seen", "done", "pseen", "eseen", "cseen", "dead"]), st.lists(text))
def test_a_record_field_is_the_digest_of_its_length_prefixed_parts(
    kind: str, identity: list[str]
) -> None:
    spelled = ":".join((kind, *(part(value) for value in identity)))
    assert field(kind, *identity) == hashlib.blake2b(spelled.encode(), digest_size=12).digest()


def test_record_fields_are_those_of_every_earlier_version() -> None:
    # Records written before an upgrade are found after it only by the same field.
    assert field("seen", "aa_1", "é").hex() == "e92352dabf064807a3246e66"
    assert field("done", "aa_1").hex() == "6fc221ba197fcea25747a54d"
    assert field("pseen", "aa_1", "", "IN_PROGRESS", "").hex() == "3c658c85f2eebc426f43ab97"
