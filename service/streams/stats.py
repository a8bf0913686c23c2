"""Read what the streams hold: lengths, consumer groups, dead letters, dedup keys.

One reader for ``fanout stats``, the ``/metrics`` collector and the dashboard.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from ..domain import clock, event_types
from ..domain.actions import TYPES
from . import replies
from .connection import Client
from .keys import Keys


def known_streams(keys: Keys) -> dict[str, str]:
    """Every stream the service writes, by name, with its kind (``completed``, ``progress``,
    ``events``, ``dead``): known by name, so no SCAN over the (many) dedup keys is needed.
    Streams of event types not in ``event_types.KNOWN`` are not listed (``collect`` finds
    them)."""
    streams = {keys.dead_letters(): "dead"}
    for type_ in TYPES:
        streams[keys.completed(type_)] = "completed"
        streams[keys.progress(type_)] = "progress"
    for type_ in event_types.KNOWN:
        streams[keys.events(type_)] = "events"
    return streams


#: Streams of unknown event types the gauges read at most (in one bucket).
MAX_OTHER_STREAMS = 500


async def other_streams(client: Client, keys: Keys) -> list[str]:
    """Streams of event types outside ``event_types.KNOWN`` that the publisher noted
    (``Keys.other_types``), at most ``MAX_OTHER_STREAMS`` of them, by name."""
    found: list[str] = []
    async for raw in client.sscan_iter(keys.other_types(), count=MAX_OTHER_STREAMS):
        found.append(keys.events(replies.text(raw)))
        if len(found) >= MAX_OTHER_STREAMS:
            break
    return sorted(found)


async def groups(client: Client, stream: str) -> list[replies.Group]:
    """The consumer groups of ``stream``, each with the entries it has still to be given.

    Redis reports as lag the entries added after the group's last delivered one,
    counting those removed since without being delivered (10 added, 3 read,
    trimmed to the newest 5: lag 7, where 5 wait). When the group's last
    delivered entry is older than the stream's first, every entry waits.
    """
    found = replies.groups(await client.xinfo_groups(stream))
    if not found:
        return found
    length = int(await client.xlen(stream))
    first = await client.xrange(stream, min="-", max="+", count=1)
    first_id = replies.order(replies.text(first[0][0])) if first else None
    return [dataclasses.replace(group, lag=_lag(group, length, first_id)) for group in found]


def _lag(group: replies.Group, length: int, first_id: tuple[int, int] | None) -> int | None:
    if first_id is None:
        return 0
    if replies.order(group.last_delivered_id) < first_id:
        return length
    return None if group.lag is None else min(group.lag, length)


async def collect(client: Client, keys: Keys) -> dict[str, Any]:
    """Every stream of the prefix, its groups, dead letters and dedup keys, as plain data."""
    streams: list[dict[str, Any]] = []
    dedup: Counter[str] = Counter()
    records: Counter[str] = Counter()
    names: list[str] = []
    refusals = keys.refusals(0).rpartition(":")[0] + ":"
    bookkeeping = (keys.other_types(),)
    async for raw in client.scan_iter(match=keys.all_pattern(), count=1000):
        key = replies.text(raw)
        parsed = keys.parse_stream(key)
        if parsed is not None or key == keys.dead_letters():
            names.append(key)
        elif key.startswith(refusals) or key in bookkeeping:
            continue  # the dashboard's counters and the gauges' list, not dedup keys
        elif (tag := _bucket_tag(key, keys)) is not None:
            records[tag] += int(await client.hlen(key))
        else:
            dedup[_dedup_kind(key, keys)] += 1
    for key in sorted(set(names)):
        if replies.text(await client.type(key)) != "stream":
            continue
        streams.append(await _stream(client, keys, key))
    dead = next((s["length"] for s in streams if s["stream"] == keys.dead_letters()), 0)
    return {
        "prefix": keys.prefix,
        "streams": streams,
        "dead_letters": dead,
        # Records of the dedup window, by type (``dead``: dead letters), in bucket hashes.
        "dedup_records": dict(sorted(records.items())),
        # Records an older version kept as keys with a TTL (gone within one window).
        "dedup_keys": {
            "completions": dedup["seen"],
            "progress_steps": dedup["pseen"],
            "webhook_events": dedup["eseen"],
            "custom_bodies": dedup["cseen"],
            "done_markers": dedup["done"],
            "dead_letter_bodies": dedup["dead_seen"],
            "poison_markers": dedup["poison"],
            "other": dedup["other"],
        },
    }


def _bucket_tag(key: str, keys: Keys) -> str | None:
    """The tag (a type, or ``dead``) of a bucket hash of dedup records, else None."""
    rest = key[len(keys.prefix) + 2 :]
    tag, _, tail = rest.partition("}:")
    kind, _, number = tail.partition(":")
    return tag if kind == "dedup" and number.isdigit() else None


def _dedup_kind(key: str, keys: Keys) -> str:
    rest = key[len(keys.prefix) + 1 :]
    tag, _, tail = rest.partition("}:")
    kind = tail.split(":", 1)[0]
    if tag == "{dead":
        return {"seen": "dead_seen", "poison": "poison"}.get(kind, "other")
    return kind if kind in ("seen", "pseen", "done", "eseen", "cseen") else "other"


async def _stream(client: Client, keys: Keys, key: str) -> dict[str, Any]:
    info = await client.xinfo_stream(key)
    first, last = info.get("first-entry"), info.get("last-entry")
    parsed = keys.parse_stream(key)
    return {
        "stream": key,
        "type": parsed[0] if parsed else None,
        "kind": parsed[1] if parsed else "dead",
        "length": int(info["length"]),
        "first_entry_at": clock.of_entry_id(first[0]) if first else None,
        "last_entry_at": clock.of_entry_id(last[0]) if last else None,
        "groups": [
            {
                "name": group.name,
                "consumers": group.consumers,
                "pending": group.pending,
                "lag": group.lag,
                "last_delivered_id": group.last_delivered_id,
            }
            for group in await groups(client, key)
        ],
    }
