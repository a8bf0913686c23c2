"""Resident memory of ``fanout serve`` after 20k and after 200k accepted events.

    python -m bench.memory [--first 20000] [--last 200000]

No delivery state lives in the process, so memory should stay flat: the
target is growth under 10 MB between the two points.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from bench import corpus
from bench.run import wrk
from bench.targets import wait_ready
from service.streams.keys import Keys
from tests.support.servers import ValkeyProcess, free_port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def accepted(client: redis.Redis, keys: Keys) -> int:
    from service.domain.actions import TYPES

    return sum(
        int(client.xlen(keys.completed(t))) + int(client.xlen(keys.progress(t))) for t in TYPES
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first", type=int, default=20_000)
    parser.add_argument("--last", type=int, default=200_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fanout-memory-"))
    server = ValkeyProcess(workdir / "valkey")
    server.start()
    corpus_path = corpus.write(workdir / "corpus.txt", args.last + args.last // 10)
    port = free_port()
    env = os.environ | {
        "FANOUT_REDIS_URL": server.url,
        "FANOUT_SECRETS": corpus.SECRET.decode(),
        "FANOUT_PORT": str(port),
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "fanout"), "serve", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis.from_url(server.url)
    keys = Keys("voucherify")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/healthz", process)
        print(f"started: {rss_mb(process.pid):.1f} MB")
        sent = 0
        for target in (args.first, args.last):
            while (count := accepted(client, keys)) < target:
                step = max(1, min(10, (target - count) // 3000))
                sent += wrk(url, corpus_path, step, 32, offset=sent).requests
            print(f"after {count:>7} accepted events: {rss_mb(process.pid):.1f} MB")
    finally:
        process.terminate()
        process.wait(10)
        client.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
