"""How the receiver scales: one server or a 3-master cluster, 1 or 2 worker processes.

Run: ``.venv/bin/python -m bench.scale`` (prints a table; asserts nothing).
Starts its own Valkey processes and ``fanout serve`` on free ports, sends
signed DONE actions of all 22 types over 64 keep-alive connections, and
reports deliveries per second. The sender runs on the same machine and takes
CPU from the receiver, so the figures are a floor, and ratios are what matter.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from service.domain import actions
from tests.support.cluster import ValkeyCluster
from tests.support.http import SECRET
from tests.support.load import make_deliveries, run_load
from tests.support.servers import FanoutProcess, ValkeyProcess

EVENTS = 6000


async def measure(url: str, cluster: bool, workers: int, log: Path) -> tuple[float, dict[int, int]]:
    fanout = FanoutProcess(
        log,
        f"--redis-url={url}",
        f"--redis-cluster={int(cluster)}",
        f"--secrets={SECRET}",
        f"--stream-prefix=bench{workers}{int(cluster)}",
        f"--workers={workers}",
    )
    fanout.start()
    try:
        warmup = make_deliveries(200, actions.TYPES)
        await run_load(fanout.base_url, warmup, concurrency=64)
        deliveries = make_deliveries(EVENTS, actions.TYPES)
        started = time.monotonic()
        tally = await run_load(fanout.base_url, deliveries, concurrency=64, seconds=120)
        return EVENTS / (time.monotonic() - started), dict(tally.answers)
    finally:
        fanout.stop()


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        single = ValkeyProcess(root / "single")
        single.start()
        try:
            with ValkeyCluster(root / "cluster") as cluster:
                print(f"{'redis':<10}{'workers':>8}{'events/s':>10}  answers")
                for name, url, is_cluster in (
                    ("single", single.url, False),
                    ("cluster-3", cluster.url, True),
                ):
                    for workers in (1, 2):
                        rate, answers = await measure(url, is_cluster, workers, root / "log")
                        print(f"{name:<10}{workers:>8}{rate:>10.0f}  {answers}")
        finally:
            single.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
