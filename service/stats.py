"""``fanout stats``: every stream of the prefix, its groups, dead letters and dedup keys."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

import msgspec

from . import ops, replies
from .config import Settings
from .keys import Keys


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("stats", help="streams, lengths, groups, pending, lag, dead")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    ops.add_redis_flags(parser)
    parser.set_defaults(handler=ops.handler(stats))


async def collect(client: ops.Client, keys: Keys) -> dict[str, Any]:
    """Everything ``stats`` shows, as plain data (the ``--json`` output)."""
    streams: list[dict[str, Any]] = []
    dedup: Counter[str] = Counter()
    names: list[str] = []
    async for raw in client.scan_iter(match=keys.all_pattern(), count=1000):
        key = replies.text(raw)
        parsed = keys.parse_stream(key)
        if parsed is not None or key == keys.dead_letters():
            names.append(key)
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
        "dedup_keys": {
            "completions": dedup["seen"],
            "progress_steps": dedup["pseen"],
            "done_markers": dedup["done"],
            "dead_letter_bodies": dedup["dead_seen"],
            "poison_markers": dedup["poison"],
            "other": dedup["other"],
        },
    }


def _dedup_kind(key: str, keys: Keys) -> str:
    rest = key[len(keys.prefix) + 1 :]
    tag, _, tail = rest.partition("}:")
    kind = tail.split(":", 1)[0]
    if tag == "{dead":
        return {"seen": "dead_seen", "poison": "poison"}.get(kind, "other")
    return kind if kind in ("seen", "pseen", "done") else "other"


async def _stream(client: ops.Client, keys: Keys, key: str) -> dict[str, Any]:
    info = await client.xinfo_stream(key)
    first, last = info.get("first-entry"), info.get("last-entry")
    parsed = keys.parse_stream(key)
    groups = []
    for group in await client.xinfo_groups(key):
        lag = group.get("lag")
        groups.append(
            {
                "name": replies.text(group["name"]),
                "consumers": int(group["consumers"]),
                "pending": int(group["pending"]),
                "lag": None if lag is None else int(lag),
                "last_delivered_id": replies.text(group.get("last-delivered-id")),
            }
        )
    return {
        "stream": key,
        "type": parsed[0] if parsed else None,
        "kind": parsed[1] if parsed else "dead",
        "length": int(info["length"]),
        "first_entry_at": ops.entry_time(first[0]) if first else None,
        "last_entry_at": ops.entry_time(last[0]) if last else None,
        "groups": groups,
    }


async def stats(args: argparse.Namespace, client: ops.Client, config: Settings) -> int:
    data = await collect(client, ops.keys(config))
    if args.json:
        sys.stdout.write(msgspec.json.encode(data).decode() + "\n")
        return 0
    from rich.table import Table

    out = ops.console()
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
            table.add_row(*first, "-", "", "")
        for n, group in enumerate(stream["groups"]):
            lag = "?" if group["lag"] is None else str(group["lag"])
            table.add_row(
                *(first if n == 0 else ["", "", "", ""]), group["name"], str(group["pending"]), lag
            )
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
