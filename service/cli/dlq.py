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

import msgspec

from ..config import Settings
from ..domain.text import escape
from ..streams import replies
from ..streams.connection import Client
from ..streams.keys import Keys
from ..streams.replay import Replayed, Replayer, find_letter
from . import flags, render, tools, usage
from .errors import CommandError
from .render import dead_letter_object, dead_row
from .tail import recent

DLQ_EXAMPLES = """\
  fanout dlq list                               the latest 50, as a table
  fanout dlq list --reason unknown_type --json
  fanout dlq show 1732800000000-0               fields and the body, pretty-printed
  fanout dlq replay 1732800000000-0             after an upgrade that knows the type
  fanout dlq replay --all"""

_ENTRY_ID = re.compile(r"^\d+(-\d+)?$")


def entry_id(value: str) -> str:
    if not _ENTRY_ID.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a stream entry id (like 1732800000000-0)"
        )
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = usage.add_command(
        commands,
        "dlq",
        help=usage.COMMANDS["dlq"],
        description="Dead letters are authenticated bodies that could not be decoded, "
        "conflicts (same id, different content) and events a consumer group gave up on "
        "(poison). Replay sends a letter through decode and publish again.",
        examples=DLQ_EXAMPLES,
    )
    actions = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = usage.add_command(
        actions, "list", help="the latest dead letters", examples=DLQ_EXAMPLES
    )
    listing.add_argument("--count", "-n", type=int, default=50, help="how many (default 50)")
    listing.add_argument("--reason", action="append", help="only this reason (repeatable)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=tools.handler(list_letters))

    show = usage.add_command(
        actions, "show", help="one dead letter with its body", examples=DLQ_EXAMPLES
    )
    show.add_argument("id", type=entry_id, help="entry id of the letter")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=tools.handler(show_letter))

    replay = usage.add_command(
        actions,
        "replay",
        help="decode and publish dead letters again",
        description="Decode and publish dead letters again (no signature check: they were "
        "checked on arrival). Accepted, duplicate or stale letters are removed; the others "
        "stay under their new reason, and the exit status is 1.",
        examples=DLQ_EXAMPLES,
    )
    replay.add_argument("ids", nargs="*", type=entry_id, metavar="ID", help="letters to replay")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.add_argument("--json", action="store_true", help="one JSON object per letter")
    replay.set_defaults(handler=tools.handler(replay_letters))

    for sub in (listing, show, replay):
        tools.add_redis_flags(sub)
    flags.add(replay, ["--cloudevents"])  # it publishes: entries as `fanout serve` writes them


async def list_letters(args: argparse.Namespace, client: Client, config: Settings) -> int:
    keys = tools.keys(config)
    reasons = {r.encode() for r in args.reason or ()}
    entries, _ = await recent(
        client,
        [keys.dead_letters()],
        max(args.count, 0),
        lambda fields: not reasons or fields.get(b"reason") in reasons,
    )
    if args.json:
        for entry in entries:
            sys.stdout.write(render.json_line(dead_letter_object(entry)) + "\n")
        return 0
    out = render.console()
    layout = render.fit(render.DEAD_COLUMNS, out.width)
    table = layout.table()
    for entry in entries:
        table.add_row(*render.cells(layout.row(dead_row(entry))))
    out.print(table)
    out.print(f"{len(entries)} shown, {await client.xlen(keys.dead_letters())} dead letters in all")
    return 0


async def show_letter(args: argparse.Namespace, client: Client, config: Settings) -> int:
    found = await find_letter(client, tools.keys(config), args.id)
    if found is None:
        raise CommandError(f"no dead letter with id {args.id}")
    obj = found.letter.as_object(found.entry_id)
    if args.json:
        sys.stdout.write(render.json_line(obj) + "\n")
        return 0
    body = obj.pop("body", "")
    for name, value in obj.items():
        print(f"{name + ':':<13} {escape(value)}")
    try:
        pretty = msgspec.json.format(body.encode(), indent=2).decode()
    except msgspec.DecodeError:
        pretty = body
    print("body:")
    print(escape(pretty, lines=True))
    return 0


async def _all_ids(client: Client, keys: Keys) -> list[str]:
    ids: list[str] = []
    start = "-"
    while True:
        page = await client.xrange(keys.dead_letters(), min=start, max="+", count=1000) or []
        ids += [replies.text(entry_id) for entry_id, _ in page]
        if len(page) < 1000:
            return ids
        start = "(" + ids[-1]


async def replay_letters(args: argparse.Namespace, client: Client, config: Settings) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    if bool(args.all) == bool(args.ids):
        print("fanout dlq replay: give letter ids or --all (not both)", file=sys.stderr)
        return 2
    ids: list[str] = await _all_ids(client, tools.keys(config)) if args.all else args.ids
    replayer = Replayer(client, config)
    results: list[Replayed] = []
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        console=render.console(stderr=True),
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
            sys.stdout.write(render.json_line(line) + "\n")
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for name in ("letter", "outcome", "detail"):
            table.add_column(name, no_wrap=name != "detail")
        for result in results:
            table.add_row(*render.cells((result.letter, result.outcome, result.detail)))
        out = render.console()
        if results:
            out.print(table)
        done = sum(r.ok for r in results)
        out.print(f"replayed {done} of {len(results)}; {len(results) - done} still dead or missing")
    return 0 if all(r.ok for r in results) else 1
