"""``fanout stats``: every stream of the prefix, its groups, dead letters and dedup keys."""

from __future__ import annotations

import argparse
import sys

from ..config import Settings
from ..streams.connection import Client
from ..streams.stats import collect
from . import render, tools, usage

COLUMNS = (
    render.Column("stream", 56, keep=0, flex=True, min_width=38),
    render.Column("length", 8, keep=1, justify="right"),
    render.Column("first entry", 24, keep=6),
    render.Column("last entry", 24, keep=5),
    render.Column("group", 20, keep=2, flex=True, min_width=10),
    render.Column("pending", 7, keep=3, justify="right"),
    render.Column("lag", 6, keep=4, justify="right"),
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = usage.add_command(
        commands,
        "stats",
        help="streams, lengths, groups, pending, lag, dead",
        description="Every stream of the prefix with its length, first and last entry, its "
        "consumer groups with their pending entries and lag, the dead letters and the dedup "
        "keys held.",
        examples="""\
  fanout stats                                  a table that fits the terminal
  fanout stats --json | jq '.streams[] | select(.groups[].lag > 0)'
  FANOUT_REDIS_URL=rediss://:pw@redis.internal:6380/0 fanout stats""",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object")
    tools.add_redis_flags(parser)
    parser.set_defaults(handler=tools.handler(stats))


async def stats(args: argparse.Namespace, client: Client, config: Settings) -> int:
    data = await collect(client, tools.keys(config))
    if args.json:
        sys.stdout.write(render.json_line(data) + "\n")
        return 0
    out = render.console()
    layout = render.fit(COLUMNS, out.width)
    table = layout.table()
    table.title = f"streams of {data['prefix']}"
    # Cropped stream names lose their end, which tells them apart: drop the prefix first.
    longest = max((len(stream["stream"]) for stream in data["streams"]), default=0)
    cut = len(data["prefix"]) + 1 if (layout.width_of("stream") or 0) < longest else 0
    for stream in data["streams"]:
        first = [
            stream["stream"][cut:],
            str(stream["length"]),
            stream["first_entry_at"] or "-",
            stream["last_entry_at"] or "-",
        ]
        if not stream["groups"]:
            table.add_row(*render.cells(layout.row([*first, "-", "", ""])))
        for n, group in enumerate(stream["groups"]):
            lag = "?" if group["lag"] is None else str(group["lag"])
            row = [*(first if n == 0 else ["", "", "", ""]), group["name"], str(group["pending"])]
            table.add_row(*render.cells(layout.row([*row, lag])))
    if data["streams"]:
        out.print(table)
    else:
        out.print(f"no streams under the prefix {data['prefix']!r}")
    out.print(f"dead letters: {data['dead_letters']}")
    held = data["dedup_keys"]
    out.print(
        "dedup keys held: "
        + ", ".join(
            f"{name.replace('_', ' ')} {count}"
            for name, count in held.items()
            if name != "other" or count
        )
    )
    return 0
