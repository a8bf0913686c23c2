"""What waiting for replicas costs on the hot path: ``fanout serve`` at the default
durability against a primary with none, one and two local replicas.

    python -m bench.replicas [--runs 3] [--duration 10] [--connections 32]

Each setup has its own Valkey 9 primary (AOF on, ``appendfsync always``) and its
replicas (AOF on, ``everysec``: the replicas' disks are not waited for), one
``fanout serve`` (1 worker, ``FANOUT_DURABILITY`` unset), wrk posting unique
signed bodies of all 22 types (``bench.run``'s corpus); setups alternate between
runs so machine drift cancels, data flushed between runs:

- no replica: ``auto`` -> ``WAITAOF 1 0`` after each batch;
- one replica: ``auto`` -> ``WAITAOF 1 0`` + ``WAIT 1`` on the batch's connection;
- two replicas: ``WAITAOF 1 0`` + ``WAIT 2``.

Prints deliveries/s, p50 and p99 per setup and run, medians, and each one's ratio
to "no replica". Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench import corpus
from bench.durability import Setup, rounds
from bench.run import has_wrk, parser
from tests.support.servers import ValkeyProcess


class Replicated(Setup):
    """A ``bench.durability`` setup whose primary has ``count`` replicas."""

    def __init__(self, name: str, workdir: Path, count: int) -> None:
        super().__init__(name, workdir, appendfsync="always", durability=None)
        assert self.server is not None
        self.replicas = [
            ValkeyProcess(workdir / f"{name}-r{n}", appendonly=True, replicaof=self.server)
            for n in range(count)
        ]

    def start(self) -> None:
        super().start()  # the primary, then fanout serve
        for replica in self.replicas:
            replica.start()
            replica.wait_synced()
        # fanout serve sees them within a second (INFO replication, sampled): a 2xx
        # then waits for every one; the warm-up round covers that second.

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        super().stop()


def main() -> int:
    args = parser(__doc__).parse_args()
    if not has_wrk():
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="fanout-bench-replicas-"))
    corpus_path = corpus.write(workdir / "corpus.txt", args.bodies)
    setups = [Replicated(name, workdir, n) for n, name in enumerate(("no replica", "one", "two"))]
    try:
        results = rounds(setups, corpus_path, args.runs, args.duration, args.connections)
        for setup in setups:  # that the waits were made: WAIT calls on each primary
            assert setup.server is not None
            with setup.server.client() as client:
                stats = client.info("commandstats")
            print(f"  {setup.name}: WAIT {stats.get('cmdstat_wait', {}).get('calls', 0)} calls")
    finally:
        for setup in setups:
            setup.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {
        name: (
            statistics.median(r.rps for r in rs),
            statistics.median(r.p99_ms for r in rs),
        )
        for name, rs in results.items()
    }
    base_rps, base_p99 = medians["no replica"]
    print(f"\nmedian of {args.runs} runs, {args.duration:.0f} s each, {args.connections} conn.:")
    for name, (rps, p99) in medians.items():
        print(
            f"  {name:<11} {rps:7.0f}/s ({rps / base_rps:4.2f}x)  p99 {p99:7.2f} ms "
            f"({p99 / base_p99:4.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
