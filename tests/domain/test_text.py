"""What reaches a terminal: escaped control characters, JSON that still means the same."""

from __future__ import annotations

import json
import re
import sys
import unicodedata

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from service.domain import text
from service.domain.text import escape, escape_json


def printable(text: str) -> bool:
    """Nothing that drives a terminal: no control character (Cc), line or paragraph
    separator, or bidi control. (Unassigned or private-use characters are harmless.)"""
    bidi = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    return not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in bidi for ch in text)


@given(st.text())
def test_escaped_text_is_printable(value: str) -> None:
    assert printable(escape(value))


@given(st.text())
def test_escaped_json_is_printable_one_line_and_the_same_value(value: str) -> None:
    line = escape_json(msgspec.json.encode({"id": value}).decode())
    assert printable(line)
    assert json.loads(line) == {"id": value}


def test_escapes_name_the_character() -> None:
    assert escape("a\x1b[31mb\x00\u202e") == "a\\x1b[31mb\\x00\\u202e"
    assert escape("one\ntwo\tthree\rfour", lines=True) == "one\ntwo\tthree\\x0dfour"


def test_isprintable_refuses_every_unprintable_character() -> None:
    # text.printable trusts str.isprintable() and runs the regex only when it is False.
    regex = re.compile(f"[{text.UNPRINTABLE}]")
    everything = map(chr, range(sys.maxunicode + 1))
    assert [ch for ch in everything if regex.match(ch) and ch.isprintable()] == []


@given(st.text())
def test_printable_is_the_regex(value: str) -> None:
    assert text.printable(value) == (re.search(f"[{text.UNPRINTABLE}]", value) is None)
