"""``fanout stats``: every stream of the prefix, its groups, dead letters and dedup keys."""

from __future__ import annotations

import argparse
import sys

from ..config import Settings
from ..streams.connection import Client
from ..streams.stats import collect
from . import render, tools


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("stats", help="streams, lengths, groups, pending, lag, dead")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    tools.add_redis_flags(parser)
    parser.set_defaults(handler=tools.handler(stats))


async def stats(args: argparse.Namespace, client: Client, config: Settings) -> int:
    data = await collect(client, tools.keys(config))
    if args.json:
        sys.stdout.write(render.json_line(data) + "\n")
        return 0
    from rich.table import Table

    out = render.console()
    table = Table(title=f"streams of {data['prefix']}", box=None, pad_edge=False)
    for name in ("stream", "length", "first entry", "last entry", "group", "pending", "lag"):
        table.add_column(
            name, no_wrap=True, justify="right" if name in ("length", "pending", "lag") else "left"
        )
    for stream in data["streams"]:
        first = [
            stream["stream"],
            str(stream["length"]),
            stream["first_entry_at"] or "-",
            stream["last_entry_at"] or "-",
        ]
        if not stream["groups"]:
            table.add_row(*render.cells([*first, "-", "", ""]))
        for n, group in enumerate(stream["groups"]):
            lag = "?" if group["lag"] is None else str(group["lag"])
            row = [*(first if n == 0 else ["", "", "", ""]), group["name"], str(group["pending"])]
            table.add_row(*render.cells([*row, lag]))
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
