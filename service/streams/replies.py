"""Stream replies of redis-py in one shape, whether the client decodes or not, RESP2 or RESP3."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


def text(value: bytes | str | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def as_bytes(value: bytes | str | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def fields(raw: Any) -> dict[bytes, bytes] | None:
    """An entry's fields with byte names and values; None for an entry deleted meanwhile."""
    if raw is None:
        return None
    return {as_bytes(k): as_bytes(v) for k, v in dict(raw).items()}


def rows(reply: Iterable[tuple[Any, Any]] | None) -> list[tuple[str, dict[bytes, bytes]]]:
    """XRANGE-like entries as ``(entry id, fields)``, leaving out deleted ones."""
    out = []
    for entry_id, raw in reply or ():
        entry = fields(raw)
        if entry is not None:
            out.append((text(entry_id), entry))
    return out


def streams(reply: Any) -> list[tuple[str, list[tuple[Any, Any]]]]:
    """XREAD/XREADGROUP's reply as ``(stream, entries)`` pairs."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [
            (text(stream), entries[0] if entries and isinstance(entries[0], list) else entries)
            for stream, entries in reply.items()
        ]
    return [(text(stream), entries) for stream, entries in reply]


def order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as numbers, to compare ids: ``"1732800000000-2"`` -> ``(…, 2)``."""
    millis, _, seq = entry_id.partition("-")
    return int(millis or 0), int(seq or 0)


@dataclass(frozen=True, slots=True)
class Group:
    """One consumer group of a stream, as XINFO GROUPS describes it."""

    name: str
    consumers: int
    pending: int
    #: Entries not yet delivered to the group; None when the server cannot tell.
    lag: int | None
    last_delivered_id: str


def groups(reply: Any) -> list[Group]:
    """XINFO GROUPS' reply, whatever the protocol and decoding, as ``Group`` rows."""
    found = []
    for raw in reply or ():
        info = {text(k): v for k, v in dict(raw).items()}
        lag = info.get("lag")
        found.append(
            Group(
                name=text(info.get("name")),
                consumers=int(info.get("consumers") or 0),
                pending=int(info.get("pending") or 0),
                lag=None if lag is None else int(lag),
                last_delivered_id=text(info.get("last-delivered-id")),
            )
        )
    return found
