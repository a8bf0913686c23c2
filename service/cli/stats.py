"""``fanout stats``: the streams of the prefix by consumer group, dead letters and dedup keys.

The table lists each consumer group with its totals, then the streams of that
group that hold something (entries, pending or lag), then the streams no group
reads. A consumer of the 22 async action types makes its group on every one of
their streams, nearly all of them empty: ``--all`` shows those rows too.
``--json`` is every stream with its groups, as ``streams.stats.collect`` reads them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import Settings
from ..streams.connection import Client
from ..streams.stats import collect
from . import render, tools, usage

COLUMNS = (
    render.Column("group", 20, keep=0, flex=True, min_width=10),
    render.Column("stream", 56, keep=1, flex=True, min_width=30),
    render.Column("length", 8, keep=2, justify="right"),
    render.Column("pending", 7, keep=3, justify="right"),
    render.Column("lag", 6, keep=4, justify="right"),
    render.Column("first entry", 24, keep=6),
    render.Column("last entry", 24, keep=5),
)
#: The group column of streams that no consumer group reads.
NO_GROUP = "(no group)"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = usage.add_command(
        commands,
        "stats",
        help=usage.COMMANDS["stats"],
        description="Each consumer group with its totals and the streams it reads that hold "
        "something (length, pending, lag, first and last entry), the streams no group reads, "
        "the dead letters and the dedup keys held. Empty streams are left out unless --all.",
        examples="""\
  fanout stats                                  a table that fits the terminal
  fanout stats --all                            empty streams too
  fanout stats --json | jq '.streams[] | select(.groups[].lag > 0)'
  FANOUT_REDIS_URL=rediss://:pw@redis.internal:6380/0 fanout stats""",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object (every stream)")
    parser.add_argument(
        "--all", action="store_true", help="also the streams with no entries, pending or lag"
    )
    tools.add_redis_flags(parser)
    parser.set_defaults(handler=tools.handler(stats))


def by_group(streams: list[dict[str, Any]]) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """``{group: [(stream, the group's figures on it or None)]}``, groups by name, then
    the streams of no group under ``NO_GROUP``."""
    groups: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    alone = []
    for stream in streams:
        for group in stream["groups"]:
            groups.setdefault(group["name"], []).append((stream, group))
        if not stream["groups"]:
            alone.append((stream, None))
    ordered = dict(sorted(groups.items()))
    if alone:
        ordered[NO_GROUP] = alone
    return ordered


def _empty(stream: dict[str, Any], group: Any) -> bool:
    return not stream["length"] and not (group and (group["pending"] or group["lag"]))


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
    hidden = 0
    for name, rows in by_group(data["streams"]).items():
        shown = [(s, g) for s, g in rows if args.all or not _empty(s, g)]
        hidden += len(rows) - len(shown)
        if name != NO_GROUP:
            lags = [g["lag"] for _, g in rows]
            lag = "?" if None in lags else str(sum(lags))
            total = sum(s["length"] for s, _ in rows)
            pending = str(sum(g["pending"] for _, g in rows))
            count = f"{len(rows)} stream{'s' * (len(rows) != 1)}"
            summary = [name, count, str(total), pending, lag, "", ""]
            table.add_row(*render.cells(layout.row(summary)))
        for n, (stream, group) in enumerate(shown):
            lag = "" if group is None else "?" if group["lag"] is None else str(group["lag"])
            row = [
                name if name == NO_GROUP and n == 0 else "",
                stream["stream"][cut:],
                str(stream["length"]),
                "" if group is None else str(group["pending"]),
                lag,
                stream["first_entry_at"] or "-",
                stream["last_entry_at"] or "-",
            ]
            table.add_row(*render.cells(layout.row(row)))
    if data["streams"]:
        out.print(table)
        if hidden:
            rows_ = "row" if hidden == 1 else "rows"
            out.print(f"{hidden} empty stream {rows_} not shown (--all shows them)")
    else:
        out.print(f"no streams under the prefix {data['prefix']!r}")
    out.print(f"dead letters: {data['dead_letters']}")
    records = data["dedup_records"]
    by_tag = ", ".join(f"{tag} {count}" for tag, count in records.items())
    out.print(f"dedup records held: {sum(records.values())}" + (f" ({by_tag})" if by_tag else ""))
    held = {name: count for name, count in data["dedup_keys"].items() if count}
    if held:
        out.print(
            "dedup keys of an older version: "
            + ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in held.items())
        )
    return 0
