"""What publishing one event can come to: the publisher's answer, by its script's reply.

Frozen msgspec Structs, not frozen dataclasses: one is made per delivery, in 0.12
against 0.52 us (timeit), as a frozen dataclass sets each field through
``object.__setattr__``.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec

from .errors import StreamFull
from .scripts import Reply

__all__ = ["Accepted", "Conflict", "Duplicate", "Outcome", "Stale", "of_reply"]


class Accepted(msgspec.Struct, frozen=True):
    """A new entry was appended."""

    stream: str
    entry_id: str


class Duplicate(msgspec.Struct, frozen=True):
    """The same delivery was published before, as ``entry_id``."""

    entry_id: str


class Conflict(msgspec.Struct, frozen=True):
    """Same (id, request_id) as ``entry_id`` but different content."""

    entry_id: str


class Stale(msgspec.Struct, frozen=True):
    """A progress update for an action whose completion is ``entry_id``."""

    entry_id: str


Outcome: TypeAlias = Accepted | Duplicate | Conflict | Stale


def of_reply(code: int, stream: str, entry_id: str, maxlen: int) -> Outcome:
    """The outcome a publish script's reply code names; ``StreamFull`` for ``FULL``.

    The code is compared with the names, not made a ``Reply``: ``Reply(code)``
    costs 0.28 us a delivery, a comparison 0.06 us (timeit, loaded machine).
    """
    match code:
        case Reply.ACCEPTED:
            return Accepted(stream, entry_id)
        case Reply.DUPLICATE:
            return Duplicate(entry_id)
        case Reply.CONFLICT:
            return Conflict(entry_id)
        case Reply.STALE:
            return Stale(entry_id)
        case Reply.FULL:
            raise StreamFull(stream, maxlen)
    raise AssertionError(f"a publish script answered {code!r}")
