"""The receiver's cost per delivery in instructions: an A/B that the machine's speed cannot move.

    python -m bench.instructions [--deliveries 2000] [--base NAME=DIR ...]

What ``bench.inprocess`` measures (the webhook route's ASGI app called in process,
32 deliveries at once, against a real Valkey with AOF and ``appendfsync always``,
durability ``auto``: verify, decode, event, script call, the wait, answer, metrics,
the delivery line at info), counted in instructions by valgrind's callgrind rather than
timed. On this project's 2-core VM the CPU time of the same code moved by a third
within minutes (``docs/performance.md``); the instruction count of the same run
repeated within 0.2%, so changes of a few per cent can be told apart. (Under
valgrind the code runs some 50 times slower while Valkey does not: what is cached
for a moment, the log line's timestamp text for its millisecond, is made again
more often than at full speed, and batches form as they do at a lower load.)

Each tree (this checkout, then every ``--base``) runs twice under callgrind, with
400 deliveries of warm-up and then none or ``--deliveries`` more; the difference
over ``--deliveries`` is its count per delivery. The bodies are the mixed load of
``bench.corpus`` (unique; every tree gets the same ones, under a fresh key prefix).
Prints each tree's count, then this tree's over each other's. Needs ``valgrind``; about a
minute per tree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import corpus
from bench.inprocess import _deliver, _scope
from service import logs
from service.config import Durability, Secret, Settings
from service.http.receiver import Receiver
from service.streams import connection
from service.streams.publisher import Publisher
from tests.support.servers import ValkeyProcess

HERE = Path(__file__).resolve().parent
#: Deliveries before the counted ones: every type's Struct built, scripts loaded.
WARM_UP = 400
WAVE = 32


async def deliver_all(url: str, path: Path, count: int) -> None:
    """The child: ``WARM_UP + count`` deliveries of the file at ``path``, ``WAVE`` at once,
    each with its delivery line at info, in JSON, to stderr (as ``fanout serve`` logs)."""
    logs.setup("info", json=True)
    lines = corpus.read(path)[: WARM_UP + count]
    settings = Settings(
        redis_url=url,
        secrets=(Secret(corpus.SECRET.decode()),),
        stream_prefix=f"bench-instr-{secrets.token_hex(4)}",
        durability=Durability("auto"),
        # Under callgrind everything here runs some 50 times slower: the default 2 s made
        # the first wave's first calls (scripts loaded, Structs built) 503 in about half
        # the runs on 2026-12-07 evening, which failed the run.
        redis_timeout=60.0,
    )
    client = connection.from_settings(settings)
    try:
        publisher = Publisher.from_settings(client, settings)
        await publisher.check_durability()
        # As the app does at start: no older version's keys here, so none are read.
        if hasattr(getattr(publisher, "legacy", None), "watch"):
            await publisher.legacy.watch()
        app = Receiver(settings, publisher)
        scopes = [(_scope(body, signed), body) for signed, body in lines]
        for start in range(0, len(scopes), WAVE):
            wave = scopes[start : start + WAVE]
            answers = await asyncio.gather(*(_deliver(app, s, b) for s, b in wave))
            assert set(answers) <= {200, 202}, answers
    finally:
        await client.aclose()


def counted(tree: Path, url: str, path: Path, count: int) -> int:
    """Instructions of one child run under callgrind, with the code of the tree at
    ``tree`` (``service``, ``bench.corpus`` and ``bench.inprocess`` come from it)."""
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(Path(__file__).resolve()),  # this file, run on the other tree's code
            "--child",
            url,
            str(path),
            str(count),
        ],
        cwd=tree,
        env=os.environ | {"PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{tree}: the run failed:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def trees_to_count(
    doc: str | None, program: str, tools: tuple[str, ...]
) -> tuple[int, dict[str, Path]]:
    """``--deliveries`` and the trees to count (this checkout as ``this``, then each
    ``--base NAME=DIR``), from the command line; exits when a tool is missing."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument(
        "--base",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another checkout to count, as NAME (repeat for more)",
    )
    args = parser.parse_args()
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"{program} needs {tool}: apt-get install valgrind")
    trees = {"this": HERE.parent} | {
        name: Path(folder).resolve() for name, folder in (item.split("=", 1) for item in args.base)
    }
    return int(args.deliveries), trees


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        asyncio.run(deliver_all(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])))
        return
    deliveries, trees = trees_to_count(__doc__, "bench.instructions", ("valgrind",))
    with tempfile.TemporaryDirectory() as folder:
        path = corpus.write(Path(folder) / "bodies.txt", WARM_UP + deliveries, kind="mixed")
        server = ValkeyProcess(Path(folder) / "valkey", appendonly=True, appendfsync="always")
        server.start()
        try:
            per_delivery = {}
            for name, tree in trees.items():
                base = counted(tree, server.url, path, 0)
                total = counted(tree, server.url, path, deliveries)
                per_delivery[name] = (total - base) / deliveries
                print(f"{name:>12}: {per_delivery[name]:,.0f} instructions per delivery ({tree})")
        finally:
            server.stop()
    print(f"\n{deliveries} mixed deliveries after {WARM_UP} of warm-up, {WAVE} at once:")
    for name, value in per_delivery.items():
        if name != "this":
            print(f"  this / {name}: {per_delivery['this'] / value:.3f}x the instructions")


if __name__ == "__main__":
    main()
