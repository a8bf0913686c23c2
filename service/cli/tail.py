"""``fanout tail``: the latest stream entries, then (``--follow``) new ones as they come.

Completions and webhook events by default; ``--refused`` shows the latest
refused deliveries instead (``streams.refusals``); ``--type`` picks async action
types or webhook event types (any event type: streams of types without a
documented schema hold drift), ``--progress`` adds the progress streams,
``--status`` keeps async actions of those statuses only, ``--dead`` shows the
dead letters instead. ``--json`` prints each event exactly as it was
published, one per line (dead letters as an object of their fields).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterable, Sequence

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import Settings
from ..domain import actions, webhooks
from ..domain.custom import CUSTOM_TYPE
from ..domain.event_types import KNOWN as EVENT_TYPES
from ..streams import replies
from ..streams.connection import Client
from ..streams.keys import Keys
from . import render, tools, usage
from .errors import CommandError
from .render import Entry

STATUSES = ("ENQUEUED", "IN_PROGRESS", "DONE", "FAILED")
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
_FIRST_BACKOFF, _MAX_BACKOFF = 0.1, 2.0
# How far back one stream is searched for entries that pass the filters.
_SCAN_LIMIT = 10_000


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = usage.add_command(
        commands,
        "tail",
        help=usage.COMMANDS["tail"],
        description="Show the latest completions and webhook events (and with --progress, "
        "progress updates) over all types, oldest first; --follow keeps printing new ones, "
        "and waits out a Redis restart. The table fits the terminal (or COLUMNS); --json "
        "prints each event exactly as published.",
        examples="""\
  fanout tail                                   the last 10 completions
  fanout tail -f                                and follow (Ctrl-C stops)
  fanout tail -f --json --type ORDERS.IMPORT --status FAILED | jq .result
  fanout tail --type voucher.published          webhook events of one type
  fanout tail --progress -n 50                  completions and progress updates
  fanout tail --dead                            dead letters
  fanout tail --refused -f                      refused deliveries: a bad signature, ...""",
    )
    parser.add_argument(
        "--type",
        action="append",
        type=event_type,
        metavar="TYPE",
        help="only this async action type (VOUCHERS.IMPORT) or webhook event type "
        "(voucher.published); repeatable",
    )
    parser.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        help="only async actions of this status (repeatable); ENQUEUED and IN_PROGRESS read "
        "the progress streams",
    )
    parser.add_argument("--progress", action="store_true", help="include progress streams")
    parser.add_argument("--dead", action="store_true", help="dead letters instead of events")
    parser.add_argument(
        "--refused",
        action="store_true",
        help="the latest refused deliveries instead of events: time, status, reason, detail, "
        "peer and header names (never a body, a signature or a header's value)",
    )
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new entries")
    parser.add_argument("--count", "-n", type=int, default=10, help="recent entries (default 10)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    tools.add_redis_flags(parser)
    parser.set_defaults(handler=tools.handler(tail))


def event_type(value: str) -> str:
    """An async action type as given, or a webhook event type in its canonical spelling."""
    if value in actions.BY_TYPE:
        return value
    if not webhooks.is_event_type(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither an async action type nor an event type "
            "(1 to 200 of A-Z a-z 0-9 . _ -)"
        )
    return webhooks.canonical_type(value)


def streams_for(args: argparse.Namespace, keys: Keys) -> list[str]:
    if args.refused:
        return [keys.refusals_latest()]
    if args.dead:
        return [keys.dead_letters()]
    types: Sequence[str] = args.type or (*actions.TYPES, *EVENT_TYPES, CUSTOM_TYPE)
    wanted = set(args.status or STATUSES)
    streams = []
    for type_ in types:
        if type_ not in actions.BY_TYPE:
            if not args.status:  # webhook events have no status
                streams.append(keys.events(type_))
            continue
        if wanted & {"DONE", "FAILED"}:
            streams.append(keys.completed(type_))
        if (args.progress or args.status) and wanted & {"ENQUEUED", "IN_PROGRESS"}:
            streams.append(keys.progress(type_))
    return streams


def _filter(args: argparse.Namespace) -> Callable[[dict[bytes, bytes]], bool]:
    if args.dead or args.refused or not args.status:
        return lambda fields: True
    wanted = {status.encode() for status in args.status}
    return lambda fields: fields.get(b"status") in wanted


async def tail(args: argparse.Namespace, client: Client, config: Settings) -> int:
    if args.count < 0:
        raise CommandError("--count must be 0 or more")
    keys = tools.keys(config)
    streams = streams_for(args, keys)
    keep = _filter(args)
    if args.refused and (args.dead or args.type or args.status or args.progress):
        raise CommandError(
            "--refused shows refused deliveries only: drop --dead, --type, --status and --progress"
        )
    show = render.printer(json=args.json, dead=args.dead, refused=args.refused)
    entries, last_ids = await recent(client, streams, args.count, keep)
    show(entries, True)
    if not args.follow:
        return 0
    block_ms = max(10, min(1000, int(config.redis_timeout * 500)))
    groups = _by_slot(streams, keys) if isinstance(client, RedisCluster) else [streams]
    backoff, lost = _FIRST_BACKOFF, False
    while True:
        try:
            answers = await asyncio.gather(
                *(
                    client.xread({s: last_ids[s] for s in group}, count=500, block=block_ms)
                    for group in groups
                )
            )
        except _CONNECTION_ERRORS as exc:
            # A restarted server (or a network blip) is waited out: follow on from
            # the last entry seen once it answers again.
            if not lost:
                print(f"fanout: lost Redis ({exc}); reconnecting", file=sys.stderr, flush=True)
                lost = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            continue
        if lost:
            print("fanout: reconnected", file=sys.stderr, flush=True)
            backoff, lost = _FIRST_BACKOFF, False
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
    client: Client,
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
