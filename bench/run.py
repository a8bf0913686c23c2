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
- alternative (FastAPI + pydantic + SET NX then XADD), service-w2 (``--workers 2``).

Each measurement is wrk, closed loop, ``-t1 -c32``: req/s, p50, p99, the CPU time
of the target's processes per request, and the server time Valkey spent per script
call (``INFO commandstats``, EVALSHA, reset before each run). ``--paced`` adds
``bench.paced``'s fixed-rate runs. Every answer must be a 2xx, or the run fails.
Prints each run, then medians with their spread, then the ratios.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from bench import corpus, report
from bench.answers import BadAnswers, check_statuses
from tests.support.servers import ValkeyProcess, free_port

HERE = Path(__file__).parent
UVICORN = [
    sys.executable,
    "-m",
    "uvicorn",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--workers",
    "1",
    "--no-access-log",
    "--log-level",
    "warning",
    "--host",
    "127.0.0.1",
]
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


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn's workers under ``--workers N``)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(_stat(int(entry.name))[1])].append(int(entry.name))
            except (OSError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, ()))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes so far."""
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _idle_seconds() -> float:
    """Idle and I/O-wait time of all the machine's cores so far (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def script_time(client: redis.Redis) -> tuple[int, int]:
    """Script calls and their server time (µs) since the last ``CONFIG RESETSTAT``."""
    stats = client.info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        if name in stats:
            calls += int(stats[name]["calls"])
            usec += int(stats[name]["usec"])
    return calls, usec


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


def _drain(stream: IO[bytes], tail: bytearray) -> None:
    """Read a server's log output as a collector would, keeping only its last 4 KiB."""
    while chunk := stream.read(1 << 16):
        tail += chunk
        del tail[: -(1 << 12)]


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def commands(service_log_level: str | None, bases: dict[str, Path]) -> dict[str, list[str]]:
    fanout = [sys.executable, "-m", "service.cli", "serve"]
    if service_log_level:
        fanout += ["--log-level", service_log_level]
    node = shutil.which("node") or "node"
    return {
        "ceiling": [*UVICORN, "bench.ceiling:app"],
        "node": [node, str(HERE / "node" / "server.mjs")],
        "alternative": [*UVICORN, "bench.alternative:app"],
        "service": fanout,
        "service-w2": [*fanout, "--workers", "2"],
    } | dict.fromkeys(bases, fanout)


def start_targets(
    redis_url: str,
    secret: str,
    names: list[str],
    service_log_level: str | None = None,
    bases: dict[str, Path] | None = None,
    env_extra: dict[str, str] | None = None,
) -> dict[str, tuple[str, subprocess.Popen[bytes]]]:
    # The service's own defaults: only where Redis is and the secret are given.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "PROMETHEUS_"))} | {
        "FANOUT_REDIS_URL": redis_url,
        "FANOUT_SECRETS": secret,
        **(env_extra or {}),
    }
    bases = bases or {}
    commands_ = commands(service_log_level, bases)
    targets: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    for name in names:
        port = free_port()
        where = bases.get(name, HERE.parent)
        process = subprocess.Popen(
            [*commands_[name], "--port", str(port)],
            env=env
            | {"FANOUT_PORT": str(port), "FANOUT_DATA_DIR": tempfile.mkdtemp()}
            | ({"PYTHONPATH": str(where)} if name in bases else {}),
            cwd=where,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        tail = bytearray()
        drain = threading.Thread(target=_drain, args=(process.stderr, tail), daemon=True)
        drain.start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{url}/webhooks/voucherify", process)
        except (RuntimeError, TimeoutError) as exc:
            drain.join(1)
            output = tail.decode(errors="replace")
            raise RuntimeError(f"{name}: {exc}; its last output:\n{output}") from None
        targets[name] = (url, process)
    return targets


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
    targets = start_targets(redis_url, corpus.SECRET.decode(), names, args.service_log_level, bases)
    valkey_pid = server.process.pid if server is not None and server.process else None
    results: dict[str, list[Result]] = {name: [] for name in names}
    fixed: dict[str, list[float]] = {}
    try:
        for url, _ in targets.values():  # warm-up
            wrk(url, corpus_path, 2, args.connections, threads=args.threads)
        for run in range(args.runs):
            for name in names[run % len(names) :] + names[: run % len(names)]:
                client.flushall()
                url, process = targets[name]
                result = measure(
                    url,
                    process.pid,
                    corpus_path,
                    args.duration,
                    args.connections,
                    valkey_pid,
                    client,
                    args.threads,
                )
                result.wrapped = name not in NOT_DEDUPLICATING and result.requests > args.bodies
                results[name].append(result)
                print(f"run {run + 1} {name:<12} {report.line(result)}", flush=True)
        if args.paced:
            fixed = paced_runs(args, targets, results, client, corpus_path)
    except BadAnswers as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for _, process in targets.values():
            process.terminate()
            process.wait(10)
        client.close()
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    report.summary(args, results, fixed)
    return 0


def paced_runs(
    args: argparse.Namespace,
    targets: dict[str, tuple[str, subprocess.Popen[bytes]]],
    results: dict[str, list[Result]],
    client: redis.Redis,
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
            client.flushall()
            outcome = paced.run(targets[name][0], pairs, rate, args.duration)
            fixed.setdefault(name, []).append(outcome.p99_ms)
            print(f"fixed {run + 1} {name:<12} {outcome.summary()}", flush=True)
    return fixed


if __name__ == "__main__":
    sys.exit(main())
