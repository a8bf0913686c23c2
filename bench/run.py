"""Throughput, latency and CPU: the service against the ceiling and the Node.js reference.

    python -m bench.run [--runs 3] [--duration 8] [--connections 32] [--targets ...]

One Valkey with AOF on and ``appendfsync always`` (see ``--appendfsync``), started
here, for every target. The load is the mixed one of ``bench.corpus``: signed
bodies, two async actions to one webhook envelope, **every body new in every
round**: Valkey is emptied before each measurement and no run sends more bodies
than the corpus holds (a replayed body is a duplicate: it writes nothing and waits
for no fsync, which flatters whoever dedups cheaply; a run that wrapped is marked).
Targets (``--targets``, measured in turn, the order rotating each round, so
machine drift cancels in the per-round ratios):

- ceiling: a bare Starlette endpoint that reads the body and answers 202, under
  uvicorn (uvloop, httptools, no access log);
- node: the Node.js reference of ``bench/node`` (Fastify 5 + ioredis: HMAC,
  ``JSON.parse``, one auto-pipelined Lua call doing ``SET NX EX`` + ``XADD`` of the
  raw body); ``npm ci --prefix bench/node`` installs it (``make bench`` does);
- service: ``fanout serve`` as users run it: one worker, its defaults (durability
  ``auto``, log level info: one line per delivery, its stderr drained through a pipe
  as a log collector would);
- base: the same, from another checkout (``--base DIR``, or ``--base NAME=DIR`` for
  a target named NAME, repeated for more): an A/B of versions in the same rounds;
- alternative (FastAPI + pydantic + SET NX then XADD), service-w2 (``--workers 2``);
- replicated (with ``--replica``): the service against a second Valkey, configured the
  same, with a replica of its own attached on this machine, so ``FANOUT_DURABILITY``
  auto also waits for the replica after each batch (the hot-path cost of that wait).

Each measurement is wrk, closed loop, ``-t1 -c32``: req/s, p50, p99, the CPU time
of the target's processes per request, and the server time Valkey spent per script
call (``INFO commandstats``, EVALSHA, reset before each run). ``--paced`` adds
``bench.paced``'s fixed-rate runs. Every answer must be a 2xx, or the run fails.
Prints each run, then medians with their spread, then the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench import corpus, report
from bench.targets import HERE, BadAnswers, check_statuses, commands, start_targets
from bench.usage import _children_seconds, _idle_seconds, cpu_seconds, script_time, tree
from tests.support.servers import ValkeyProcess

#: Targets that deduplicate: a replayed body would flatter them.
NOT_DEDUPLICATING = {"ceiling"}


@dataclass
class Result:
    requests: int
    seconds: float
    bad_status: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int] = field(default_factory=dict)
    cpu_us: float = 0.0  # CPU time of the server's processes per request
    cores: float = 0.0  # the server's processes' CPU time over wall time
    valkey_cores: float = 0.0  # Valkey's CPU time over wall time (when started here)
    wrk_cores: float = 0.0  # wrk's CPU time over wall time
    idle_cores: float = 0.0  # cores the machine left idle (or waiting on I/O)
    script_us: float = 0.0  # Valkey's server time per script call (EVALSHA)
    wrapped: bool = False  # more requests than bodies: some were replays

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def per_core(self) -> float:
        return 1e6 / self.cpu_us if self.cpu_us else 0.0


def wrk(
    url: str,
    corpus_path: Path,
    seconds: float,
    connections: int,
    offset: int = 0,
    threads: int = 1,
) -> Result:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            str(HERE / "post.lua"),
            url,
            "--",
            str(corpus_path),
            str(threads),
            str(offset),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    requests, micros, bad, errors, p50, p99 = (float(v) for v in line.split()[1:])
    statuses = {
        int(x.split()[1]): int(x.split()[2]) for x in out.splitlines() if x.startswith("STATUS ")
    }
    return Result(
        int(requests), micros / 1e6, int(bad), int(errors), p50 / 1000, p99 / 1000, statuses
    )


def measure(
    url: str,
    pid: int,
    corpus_path: Path,
    seconds: float,
    connections: int,
    valkey_pid: int | None = None,
    client: redis.Redis | None = None,
    threads: int = 1,
) -> Result:
    pids = tree(pid)
    if client is not None:
        client.config_resetstat()
    before = cpu_seconds(pids)
    valkey_before = cpu_seconds([valkey_pid]) if valkey_pid else 0.0
    idle_before, wrk_before, started = _idle_seconds(), _children_seconds(), time.monotonic()
    result = wrk(url, corpus_path, seconds, connections, threads=threads)
    elapsed = time.monotonic() - started
    used = cpu_seconds(pids) - before
    result.cpu_us = used / max(result.requests, 1) * 1e6
    result.cores = used / result.seconds
    if valkey_pid:
        result.valkey_cores = (cpu_seconds([valkey_pid]) - valkey_before) / elapsed
    result.wrk_cores = (_children_seconds() - wrk_before) / elapsed
    result.idle_cores = (_idle_seconds() - idle_before) / elapsed
    if client is not None:
        calls, usec = script_time(client)
        result.script_us = usec / calls if calls else 0.0
    check_statuses(url, result.statuses, result.socket_errors)
    return result


def parser(description: str | None) -> argparse.ArgumentParser:
    """The options every wrk benchmark here takes: runs, duration, connections, bodies."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bodies", type=int, default=160_000)
    return parser


def has_wrk() -> bool:
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (Debian/Ubuntu)", file=sys.stderr)
        return False
    return True


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--targets", default="ceiling,node,service")
    options.add_argument(
        "--base",
        action="append",
        default=[],
        help="[NAME=]DIR: the service of that checkout as target NAME (default 'base')",
    )
    options.add_argument("--kind", choices=["mixed", "actions"], default="mixed")
    options.add_argument("--threads", type=int, default=1, help="wrk's threads")
    options.add_argument("--appendfsync", default="always", help="of the Valkey started here")
    options.add_argument("--paced", action="store_true", help="add the fixed-rate runs")
    options.add_argument(
        "--replica", action="store_true", help="add the target 'replicated' (a replica attached)"
    )
    options.add_argument("--redis-url", help="use this Redis (FLUSHALLed between runs!)")
    options.add_argument("--service-log-level", help="of the service (default: its own, info)")
    args = options.parse_args()
    names = args.targets.split(",")
    bases = {
        (entry.split("=", 1)[0] if "=" in entry else "base"): Path(entry.split("=", 1)[-1])
        for entry in args.base
    }
    if unknown := [n for n in names if n not in commands(None, bases)]:
        options.error(f"unknown targets {unknown} (a base target needs --base NAME=DIR)")
    if not has_wrk():
        return 1
    if "node" in names and not (HERE / "node" / "node_modules").is_dir():
        print("npm ci --prefix bench/node first (make bench does)", file=sys.stderr)
        return 1

    workdir = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    server = None
    if args.redis_url:
        redis_url = args.redis_url
    else:
        server = ValkeyProcess(workdir / "valkey", appendonly=True, appendfsync=args.appendfsync)
        server.start()
        redis_url = server.url
    client = redis.Redis.from_url(redis_url)
    clients = dict.fromkeys(names, client)
    valkey_pids = dict.fromkeys(
        names, server.process.pid if server is not None and server.process else None
    )
    replicated: list[ValkeyProcess] = []
    if args.replica:
        primary = ValkeyProcess(workdir / "primary", appendonly=True, appendfsync=args.appendfsync)
        primary.start()
        replica = ValkeyProcess(
            workdir / "replica",
            appendonly=True,
            appendfsync=args.appendfsync,
            replicaof=primary,
        )
        replica.start()
        replica.wait_synced()
        replicated = [replica, primary]
        names.append("replicated")
        clients["replicated"] = redis.Redis.from_url(primary.url)
        valkey_pids["replicated"] = primary.process.pid if primary.process else None
    found = client.info("server")
    print(
        f"corpus: {args.bodies} signed {args.kind} bodies; Redis {redis_url}"
        f" {found.get('server_name', 'redis')}"
        f" {found.get('valkey_version', found['redis_version'])}"
        f" appendonly={client.config_get('appendonly')['appendonly']}"
        f" appendfsync={client.config_get('appendfsync')['appendfsync']};"
        f" wrk -t{args.threads} -c{args.connections}, {args.runs} x {args.duration:.0f} s;"
        f" load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    corpus_path = corpus.write(workdir / "corpus.txt", args.bodies, kind=args.kind)
    targets = start_targets(
        redis_url,
        corpus.SECRET.decode(),
        names,
        args.service_log_level,
        bases,
        urls={"replicated": replicated[1].url} if replicated else None,
    )
    results: dict[str, list[Result]] = {name: [] for name in names}
    fixed: dict[str, list[float]] = {}
    try:
        for url, _ in targets.values():  # warm-up
            wrk(url, corpus_path, 2, args.connections, threads=args.threads)
        for run in range(args.runs):
            for name in names[run % len(names) :] + names[: run % len(names)]:
                clients[name].flushall()
                url, process = targets[name]
                result = measure(
                    url,
                    process.pid,
                    corpus_path,
                    args.duration,
                    args.connections,
                    valkey_pids[name],
                    clients[name],
                    args.threads,
                )
                result.wrapped = name not in NOT_DEDUPLICATING and result.requests > args.bodies
                results[name].append(result)
                print(f"run {run + 1} {name:<12} {report.line(result)}", flush=True)
        if args.paced:
            fixed = paced_runs(args, targets, results, clients, corpus_path)
    except BadAnswers as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for _, process in targets.values():
            process.terminate()
            process.wait(10)
        for each in {id(c): c for c in clients.values()}.values():
            each.close()
        if server is not None:
            server.stop()
        for each_server in replicated:
            each_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    report.summary(args, results, fixed)
    return 0


def paced_runs(
    args: argparse.Namespace,
    targets: dict[str, tuple[str, subprocess.Popen[bytes]]],
    results: dict[str, list[Result]],
    clients: dict[str, redis.Redis],
    corpus_path: Path,
) -> dict[str, list[float]]:
    """p99 at a fixed rate: half the slowest target's saturated throughput, for all."""
    from bench import paced  # uvloop: installed with uvicorn[standard]

    pairs = corpus.read(corpus_path)
    rate = min(statistics.median(r.rps for r in rs) for rs in results.values()) / 2
    fixed: dict[str, list[float]] = {}
    names = list(targets)
    for run in range(args.runs):
        for name in names[run % len(names) :] + names[: run % len(names)]:
            clients[name].flushall()
            outcome = paced.run(targets[name][0], pairs, rate, args.duration)
            fixed.setdefault(name, []).append(outcome.p99_ms)
            print(f"fixed {run + 1} {name:<12} {outcome.summary()}", flush=True)
    return fixed


if __name__ == "__main__":
    sys.exit(main())
