"""``fanout dlq list|show|replay``: look at dead letters and send them through again.

``replay`` decodes a letter's body as the receiver does (without the signature
check: the body was authenticated when it arrived) and publishes it. A letter
that is now accepted, a duplicate, or stale progress is removed; one that fails
again stays, with the new reason. A ``poison`` letter (a consumer group gave up
on it) holds a published event: replay appends it again to its stream, so every
group of that stream receives it once more.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from . import events, ops, replies
from .cli import CommandError
from .completion import decode_event
from .config import Settings
from .keys import Keys
from .publish import Accepted, Conflict, Duplicate, Publisher, Stale
from .tail import Entry, dead_letter_object, dead_row, dead_table, recent

# Replace a letter by one with a new reason, and point its dedup key at it.
# KEYS: dead seen, dead stream.  ARGV: old entry id, ttl, maxlen, field/value pairs.
REPLACE_LUA = """
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('XDEL', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], entry, 'EX', ARGV[2])
return entry
"""

_ENTRY_ID = re.compile(r"^\d+(-\d+)?$")


def entry_id(value: str) -> str:
    if not _ENTRY_ID.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a stream entry id (like 1732800000000-0)"
        )
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("dlq", help="list, show and replay dead letters")
    actions = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the latest dead letters")
    listing.add_argument("--count", "-n", type=int, default=50, help="how many (default 50)")
    listing.add_argument("--reason", action="append", help="only this reason (repeatable)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=ops.handler(list_letters))

    show = actions.add_parser("show", help="one dead letter with its body")
    show.add_argument("id", type=entry_id, help="entry id of the letter")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=ops.handler(show_letter))

    replay = actions.add_parser("replay", help="decode and publish dead letters again")
    replay.add_argument("ids", nargs="*", type=entry_id, metavar="ID", help="letters to replay")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.add_argument("--json", action="store_true", help="one JSON object per letter")
    replay.set_defaults(handler=ops.handler(replay_letters))

    for sub in (listing, show, replay):
        ops.add_redis_flags(sub)


async def list_letters(args: argparse.Namespace, client: ops.Client, config: Settings) -> int:
    keys = ops.keys(config)
    reasons = {r.encode() for r in args.reason or ()}
    entries, _ = await recent(
        client,
        [keys.dead_letters()],
        max(args.count, 0),
        lambda fields: not reasons or fields.get(b"reason") in reasons,
    )
    if args.json:
        for entry in entries:
            line = msgspec.json.encode(dead_letter_object(entry.entry_id, entry.fields))
            sys.stdout.write(line.decode() + "\n")
        return 0
    out = ops.console()
    table = dead_table()
    for entry in entries:
        table.add_row(*dead_row(entry.entry_id, entry.fields))
    out.print(table)
    out.print(f"{len(entries)} shown, {await client.xlen(keys.dead_letters())} dead letters in all")
    return 0


async def _letter(client: ops.Client, keys: Keys, id_: str) -> Entry | None:
    found = replies.rows(await client.xrange(keys.dead_letters(), min=id_, max=id_, count=1))
    if not found:
        return None
    [(letter_id, fields)] = found
    return Entry(keys.dead_letters(), letter_id, fields)


async def show_letter(args: argparse.Namespace, client: ops.Client, config: Settings) -> int:
    letter = await _letter(client, ops.keys(config), args.id)
    if letter is None:
        raise CommandError(f"no dead letter with id {args.id}")
    obj = dead_letter_object(letter.entry_id, letter.fields)
    if args.json:
        sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
        return 0
    body = obj.pop("body", "")
    for name, value in obj.items():
        print(f"{name + ':':<13} {value}")
    try:
        pretty = msgspec.json.format(body.encode(), indent=2).decode()
    except msgspec.DecodeError:
        pretty = body
    print("body:")
    print(pretty)
    return 0


@dataclass(frozen=True, slots=True)
class Replayed:
    letter: str
    outcome: str  # accepted, duplicate, stale, requeued, dead, missing
    detail: str
    #: The letter's new entry id when it failed again and was re-filed.
    new_entry_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("accepted", "duplicate", "stale", "requeued")


class Replayer:
    """Sends dead letters through the publish path again, one at a time."""

    def __init__(self, client: ops.Client, config: Settings) -> None:
        self.client = client
        self.keys = ops.keys(config)
        self.config = config
        self.publisher = Publisher.from_settings(client, config)
        self._replace = client.register_script(REPLACE_LUA)

    async def replay(self, id_: str) -> Replayed:
        letter = await _letter(self.client, self.keys, id_)
        if letter is None:
            return Replayed(id_, "missing", "no dead letter with this id")
        fields = letter.fields
        if fields.get(b"reason") == b"poison":
            return await self._requeue(letter)
        body = fields.get(b"body", b"")
        received_at = _parse_time(replies.text(fields.get(b"received_at")))
        try:
            action = events.decode(body)
        except msgspec.ValidationError as exc:
            return await self._keep(letter, events.failure_reason(exc), str(exc))
        except msgspec.DecodeError as exc:
            return await self._keep(letter, "malformed_json", str(exc))
        outcome = await self.publisher.publish(action, received_at)
        if isinstance(outcome, Conflict):
            detail = f"same id and request_id as entry {outcome.entry_id}, different content"
            return await self._keep(letter, "conflict", detail)
        await self.client.xdel(self.keys.dead_letters(), letter.entry_id)
        match outcome:
            case Accepted(stream=stream, entry_id=entry):
                return Replayed(letter.entry_id, "accepted", f"{stream} {entry}")
            case Duplicate(entry_id=entry):
                return Replayed(letter.entry_id, "duplicate", f"published before as {entry}")
            case Stale(entry_id=entry):
                return Replayed(letter.entry_id, "stale", f"progress after completion {entry}")
        raise AssertionError(outcome)

    async def _requeue(self, letter: Entry) -> Replayed:
        body = letter.fields.get(b"body", b"")
        stream = replies.text(letter.fields.get(b"stream"))
        try:
            event = decode_event(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Replayed(letter.entry_id, "dead", f"poison: cannot decode the event: {exc}")
        if stream not in (self.keys.completed(event.type), self.keys.progress(event.type)):
            return Replayed(letter.entry_id, "dead", f"poison: unknown stream {stream!r}")
        entry = await self.client.xadd(
            stream,
            {
                "type": event.type,
                "status": event.status,
                "id": event.id,
                "request_id": event.request_id or "",
                "event": body,
            },
            maxlen=self.config.stream_maxlen,
            approximate=True,
        )
        await self.client.xdel(self.keys.dead_letters(), letter.entry_id)
        return Replayed(letter.entry_id, "requeued", f"{stream} {replies.text(entry)}")

    async def _keep(self, letter: Entry, reason: str, detail: str) -> Replayed:
        fields = letter.fields
        if (
            replies.text(fields.get(b"reason")) == reason
            and replies.text(fields.get(b"detail")) == detail
        ):
            return Replayed(letter.entry_id, "dead", f"{reason}: {detail}")
        updated = dict(fields) | {b"reason": reason.encode(), b"detail": detail.encode()}
        args: list[Any] = [letter.entry_id, self.config.dedup_ttl, self.config.stream_maxlen]
        for key, value in updated.items():
            args += [key, value]
        sha = replies.text(fields.get(b"sha256"))
        new = await self._replace(
            keys=[self.keys.dead_seen(sha), self.keys.dead_letters()], args=args
        )
        now = replies.text(new)
        return Replayed(letter.entry_id, "dead", f"{reason}: {detail} (now {now})", now)


def _parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _all_ids(client: ops.Client, keys: Keys) -> list[str]:
    ids: list[str] = []
    start = "-"
    while True:
        page = await client.xrange(keys.dead_letters(), min=start, max="+", count=1000) or []
        ids += [replies.text(entry_id) for entry_id, _ in page]
        if len(page) < 1000:
            return ids
        start = "(" + ids[-1]


async def replay_letters(args: argparse.Namespace, client: ops.Client, config: Settings) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    if bool(args.all) == bool(args.ids):
        print("fanout dlq replay: give letter ids or --all (not both)", file=sys.stderr)
        return 2
    ids: list[str] = await _all_ids(client, ops.keys(config)) if args.all else args.ids
    replayer = Replayer(client, config)
    results: list[Replayed] = []
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        console=ops.console(stderr=True),
        transient=True,
        disable=len(ids) < 20,
    ) as progress:
        task = progress.add_task("replay", total=len(ids))
        for id_ in ids:
            results.append(await replayer.replay(id_))
            progress.advance(task)
    if args.json:
        for result in results:
            line = {"letter": result.letter, "outcome": result.outcome, "detail": result.detail}
            sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for name in ("letter", "outcome", "detail"):
            table.add_column(name, no_wrap=name != "detail")
        for result in results:
            table.add_row(result.letter, result.outcome, result.detail)
        out = ops.console()
        if results:
            out.print(table)
        done = sum(r.ok for r in results)
        out.print(f"replayed {done} of {len(results)}; {len(results) - done} still dead or missing")
    return 0 if all(r.ok for r in results) else 1
