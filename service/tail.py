"""``fanout tail``: the latest stream entries, then (``--follow``) new ones as they come.

Completions by default; ``--progress`` adds the progress streams, ``--dead``
shows the dead letters instead. ``--json`` prints each event exactly as it was
published, one per line (dead letters as an object of their fields).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from redis.asyncio.cluster import RedisCluster

from . import events, ops, replies
from .cli import CommandError
from .completion import decode_event
from .config import Settings
from .keys import Keys

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

STATUSES = ("ENQUEUED", "IN_PROGRESS", "DONE", "FAILED")
# How far back one stream is searched for entries that pass the filters.
_SCAN_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    entry_id: str
    fields: dict[bytes, bytes]

    @property
    def order(self) -> tuple[int, int]:
        millis, _, seq = self.entry_id.partition("-")
        return int(millis), int(seq or 0)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("tail", help="show recent stream entries, optionally follow")
    parser.add_argument(
        "--type", action="append", choices=events.TYPES, metavar="TYPE", help="repeatable"
    )
    parser.add_argument("--status", action="append", choices=STATUSES, help="repeatable")
    parser.add_argument("--progress", action="store_true", help="include progress streams")
    parser.add_argument("--dead", action="store_true", help="dead letters instead of events")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new entries")
    parser.add_argument("--count", "-n", type=int, default=10, help="recent entries (default 10)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    ops.add_redis_flags(parser)
    parser.set_defaults(handler=ops.handler(tail))


def streams_for(args: argparse.Namespace, keys: Keys) -> list[str]:
    if args.dead:
        return [keys.dead_letters()]
    types: Sequence[str] = args.type or events.TYPES
    wanted = set(args.status or STATUSES)
    streams = []
    for type_ in types:
        if wanted & {"DONE", "FAILED"}:
            streams.append(keys.completed(type_))
        if (args.progress or args.status) and wanted & {"ENQUEUED", "IN_PROGRESS"}:
            streams.append(keys.progress(type_))
    return streams


def _filter(args: argparse.Namespace) -> Callable[[dict[bytes, bytes]], bool]:
    if args.dead or not args.status:
        return lambda fields: True
    wanted = {status.encode() for status in args.status}
    return lambda fields: fields.get(b"status") in wanted


async def tail(args: argparse.Namespace, client: ops.Client, config: Settings) -> int:
    if args.count < 0:
        raise CommandError("--count must be 0 or more")
    keys = ops.keys(config)
    streams = streams_for(args, keys)
    keep = _filter(args)
    show = _printer(args)
    entries, last_ids = await recent(client, streams, args.count, keep)
    show(entries, True)
    if not args.follow:
        return 0
    block_ms = max(10, min(1000, int(config.redis_timeout * 500)))
    groups = _by_slot(streams, keys) if isinstance(client, RedisCluster) else [streams]
    while True:
        answers = await asyncio.gather(
            *(
                client.xread({s: last_ids[s] for s in group}, count=500, block=block_ms)
                for group in groups
            )
        )
        batch: list[Entry] = []
        for reply in answers:
            for stream, found in replies.streams(reply):
                for entry_id, fields in replies.rows(found):
                    last_ids[stream] = entry_id
                    if keep(fields):
                        batch.append(Entry(stream, entry_id, fields))
        batch.sort(key=lambda e: e.order)
        show(batch, False)


async def recent(
    client: ops.Client,
    streams: Iterable[str],
    count: int,
    keep: Callable[[dict[bytes, bytes]], bool],
) -> tuple[list[Entry], dict[str, str]]:
    """The last ``count`` entries over ``streams`` that pass ``keep``, oldest first,
    and the id of each stream's newest entry (where following starts)."""
    found: list[Entry] = []
    last_ids: dict[str, str] = {}
    page_size = max(count, 100)
    for stream in streams:
        matched: list[Entry] = []
        end, scanned = "+", 0
        while True:
            reply = await client.xrevrange(stream, max=end, min="-", count=page_size)
            page = replies.rows(reply)
            if stream not in last_ids:
                last_ids[stream] = page[0][0] if page else "0-0"
            for entry_id, fields in page:
                if keep(fields):
                    matched.append(Entry(stream, entry_id, fields))
            scanned += len(reply or ())
            if len(matched) >= count or len(reply or ()) < page_size or scanned >= _SCAN_LIMIT:
                break
            end = "(" + replies.text(reply[-1][0]) if reply else "-"
        found += matched[:count]
    found.sort(key=lambda e: e.order)
    return found[max(0, len(found) - count) :], last_ids


def _by_slot(streams: Sequence[str], keys: Keys) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for stream in streams:
        parsed = keys.parse_stream(stream)
        groups.setdefault(parsed[0] if parsed else stream, []).append(stream)
    return list(groups.values())


# --- output -------------------------------------------------------------------


def _printer(args: argparse.Namespace) -> Callable[[list[Entry], bool], None]:
    if args.json:
        return lambda entries, first: _print_json(entries, dead=args.dead)
    out = ops.console()
    return lambda entries, first: _print_table(out, entries, dead=args.dead, header=first)


def dead_letter_object(entry_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    obj: dict[str, Any] = {"entry_id": entry_id}
    obj.update({replies.text(k): replies.text(v) for k, v in fields.items()})
    return obj


def _print_json(entries: list[Entry], *, dead: bool) -> None:
    for entry in entries:
        if dead:
            line = msgspec.json.encode(dead_letter_object(entry.entry_id, entry.fields)).decode()
        else:
            line = replies.text(entry.fields.get(b"event"))
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def event_table(header: bool = True) -> Table:
    from rich.table import Table

    table = Table(show_header=header, box=None, pad_edge=False)
    for name, width in (
        ("time", 24),
        ("type", 27),
        ("status", 11),
        ("id", 24),
        ("request_id", 22),
        ("progress", 8),
        ("done", 6),
        ("failed", 6),
    ):
        justify: Any = "right" if name in ("progress", "done", "failed") else "left"
        table.add_column(name, width=width, min_width=width, no_wrap=True, justify=justify)
    return table


def dead_table(header: bool = True) -> Table:
    from rich.table import Table

    table = Table(show_header=header, box=None, pad_edge=False)
    for name, width in (("entry_id", 16), ("time", 24), ("reason", 15), ("sha256", 12)):
        table.add_column(name, width=width, min_width=width, no_wrap=True)
    table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=80)
    return table


def event_row(entry: Entry) -> list[str]:
    fields = entry.fields
    row = [
        ops.entry_time(entry.entry_id),
        replies.text(fields.get(b"type")),
        replies.text(fields.get(b"status")),
        replies.text(fields.get(b"id")),
        replies.text(fields.get(b"request_id")),
        "",
        "",
        "",
    ]
    try:
        event = decode_event(fields.get(b"event", b""))
    except (msgspec.DecodeError, msgspec.ValidationError):
        row[5] = "?"
        return row
    row[5:] = [
        "" if value is None else str(value)
        for value in (event.progress, event.done_count, event.failed_count)
    ]
    return row


def dead_row(entry_id: str, fields: dict[bytes, bytes]) -> list[str]:
    return [
        entry_id,
        replies.text(fields.get(b"received_at")) or ops.entry_time(entry_id),
        replies.text(fields.get(b"reason")),
        replies.text(fields.get(b"sha256"))[:12],
        replies.text(fields.get(b"detail")).replace("\n", " "),
    ]


def _print_table(out: Console, entries: list[Entry], *, dead: bool, header: bool) -> None:
    if not entries and not header:
        return
    table = dead_table(header) if dead else event_table(header)
    for entry in entries:
        table.add_row(*(dead_row(entry.entry_id, entry.fields) if dead else event_row(entry)))
    out.print(table)
    if header and not entries:
        out.print("(no entries)")
    out.file.flush()
