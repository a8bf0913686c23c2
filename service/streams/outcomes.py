"""What publishing one event can come to: the publisher's answer, by its script's reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .errors import StreamFull
from .scripts import Reply

__all__ = ["Accepted", "Conflict", "Duplicate", "Outcome", "Stale", "of_reply"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A new entry was appended."""

    stream: str
    entry_id: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The same delivery was published before, as ``entry_id``."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """Same (id, request_id) as ``entry_id`` but different content."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class Stale:
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
