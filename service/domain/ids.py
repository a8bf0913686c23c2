"""The ids a sender chooses, and the one check every kind of body applies to them.

Ids become parts of Redis keys and are printed on operators' terminals: at most
256 characters, printable (none of ``text.UNPRINTABLE``: control characters,
DEL, line separators, bidi controls). ``\\Z``, not ``$``, which would let a
trailing newline through. Async actions (``actions``) and webhook envelopes
(``webhooks``) use these types and ``refuse_unprintable``; neither module
reaches into the other for them.

msgspec checks the lengths; the characters are checked after the decode by
``refuse_unprintable`` (code decoding these types must call it), which refuses
what the pattern would, with msgspec's own message. A ``Meta(pattern=...)``
runs Python's ``re`` on every id from inside the decoder: 0.3 us an id, 40% of
the decode time of an async action (1.4 us against 0.86 us in bench.decode).
The pattern stays in the JSON schema of the types.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

import msgspec

from .text import UNPRINTABLE, printable

_PRINTABLE = f"[^{UNPRINTABLE}]"
MAX_ID_LENGTH = 256
ID_PATTERN = rf"^{_PRINTABLE}+\Z"
ID_TEXT_PATTERN = rf"^{_PRINTABLE}*\Z"
Id: TypeAlias = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH, extra_json_schema={"pattern": ID_PATTERN}),
]
#: The same, where empty is allowed (a request id; ids whose absence code handles).
IdText: TypeAlias = Annotated[
    str, msgspec.Meta(max_length=MAX_ID_LENGTH, extra_json_schema={"pattern": ID_TEXT_PATTERN})
]


def refuse_unprintable(value: str | None, path: str, pattern: str = ID_TEXT_PATTERN) -> None:
    """Raise what msgspec raises for ``Meta(pattern=pattern)`` if ``value`` has an
    unprintable character (``path`` is where it was, as in ``$.event.id``)."""
    if value and not printable(value):
        raise msgspec.ValidationError(f"Expected `str` matching regex {pattern!r} - at `{path}`")
