"""Throughput and latency: the service against the ceiling and the usual alternative.

    python -m bench.run [--runs 3] [--duration 10] [--connections 32] [--kind mixed]

One Valkey with AOF on (``appendfsync always`` by default: see ``--appendfsync``),
started here; the service runs with its own defaults (durability included).
The load is the mixed one of ``bench.corpus``: unique signed bodies, two async
actions to one webhook envelope. Targets, under the same uvicorn settings
(uvloop, httptools, no access log), alternating so machine drift cancels:

- ceiling: a bare Starlette endpoint that reads the body and answers 202;
- alternative: FastAPI + pydantic v2 + SET NX then XADD (``bench.alternative``);
- service: ``fanout serve`` as users run it, one worker, at its default log
  level (one line per delivery; its stderr goes to a pipe this process drains,
  as a log collector would; ``--service-log-level warning`` leaves them out);
- service-w2: ``fanout serve --workers 2`` (deliveries per second per core used).

Each saturated run also reports where the machine's two cores went: the
target's processes, Valkey, wrk, and what stayed idle.

Two measurements per target and round:

1. saturation: wrk, closed loop, ``--connections`` connections, as fast as it goes;
2. fixed rate: ``bench.paced``, open loop at half the ceiling's saturated
   throughput (the median of this run), p99 at that offered rate; and at half
   the service's own saturated throughput, a load every target can carry. A
   target whose saturated throughput is below a rate is not run at it: it
   would only queue (printed as "overloaded").

Every answer must be a 2xx: any other status, or a socket error, fails the run
(exit status 1) after printing what came back. Prints medians and ratios.
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from bench import corpus
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


class BadAnswers(RuntimeError):
    """A target answered something other than 2xx."""


def check_statuses(url: str, statuses: Mapping[int, int], socket_errors: int = 0) -> None:
    bad = {status: n for status, n in statuses.items() if not 200 <= status < 300}
    if bad or socket_errors:
        raise BadAnswers(
            f"{url}: non-2xx answers {bad or 'none'}, socket errors {socket_errors}"
            f" (all answers: {dict(statuses)})"
        )


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

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def per_core(self) -> float:
        return 1e6 / self.cpu_us if self.cpu_us else 0.0


def wrk(url: str, corpus_path: Path, seconds: float, connections: int, offset: int = 0) -> Result:
    threads = 2
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


def measure(
    url: str,
    pid: int,
    corpus_path: Path,
    seconds: float,
    connections: int,
    valkey_pid: int | None = None,
) -> Result:
    pids = tree(pid)
    before = cpu_seconds(pids)
    valkey_before = cpu_seconds([valkey_pid]) if valkey_pid else 0.0
    idle_before, wrk_before, started = _idle_seconds(), _children_seconds(), time.monotonic()
    result = wrk(url, corpus_path, seconds, connections)
    elapsed = time.monotonic() - started
    used = cpu_seconds(pids) - before
    result.cpu_us = used / max(result.requests, 1) * 1e6
    result.cores = used / result.seconds
    if valkey_pid:
        result.valkey_cores = (cpu_seconds([valkey_pid]) - valkey_before) / elapsed
    result.wrk_cores = (_children_seconds() - wrk_before) / elapsed
    result.idle_cores = (_idle_seconds() - idle_before) / elapsed
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


def start_targets(
    redis_url: str, secret: str, names: list[str], service_log_level: str | None = None
) -> dict[str, tuple[str, subprocess.Popen[bytes]]]:
    # The service's own defaults: only where Redis is and the secret are given.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "PROMETHEUS_"))} | {
        "FANOUT_REDIS_URL": redis_url,
        "FANOUT_SECRETS": secret,
    }
    fanout = [str(Path(sys.executable).parent / "fanout"), "serve"]
    if service_log_level:
        fanout += ["--log-level", service_log_level]
    commands = {
        "ceiling": [*UVICORN, "bench.ceiling:app"],
        "alternative": [*UVICORN, "bench.alternative:app"],
        "service": fanout,
        "service-w2": [*fanout, "--workers", "2"],
    }
    targets: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    for name in names:
        port = free_port()
        process = subprocess.Popen(
            [*commands[name], "--port", str(port)],
            env=env | {"FANOUT_PORT": str(port), "FANOUT_DATA_DIR": tempfile.mkdtemp()},
            cwd=HERE.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        tail = bytearray()
        drain = threading.Thread(target=_drain, args=(process.stderr, tail), daemon=True)
        drain.start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{base}/webhooks/voucherify", process)
        except (RuntimeError, TimeoutError) as exc:
            drain.join(1)
            output = tail.decode(errors="replace")
            raise RuntimeError(f"{name}: {exc}; its last output:\n{output}") from None
        targets[name] = (base, process)
    return targets


def parser(description: str | None) -> argparse.ArgumentParser:
    """The options every wrk benchmark here takes: runs, duration, connections, bodies."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bodies", type=int, default=120_000)
    return parser


def has_wrk() -> bool:
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (Debian/Ubuntu)", file=sys.stderr)
        return False
    return True


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--kind", choices=["mixed", "actions"], default="mixed")
    options.add_argument(
        "--appendfsync",
        default="always",
        help="of the Valkey started here (AOF on); 'always' as the service's embedded server",
    )
    options.add_argument("--no-paced", action="store_true", help="skip the fixed-rate runs")
    options.add_argument("--no-workers2", action="store_true", help="skip service-w2")
    options.add_argument("--redis-url", help="use this Redis (FLUSHALLed between runs!)")
    options.add_argument(
        "--service-log-level",
        help="of the service (default: its own, info: one line per delivery)",
    )
    args = options.parse_args()
    if not has_wrk():
        return 1
    from bench import paced  # uvloop: installed with uvicorn[standard]

    workdir = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    server = None
    if args.redis_url:
        redis_url = args.redis_url
    else:
        server = ValkeyProcess(workdir / "valkey", appendonly=True, appendfsync=args.appendfsync)
        server.start()
        redis_url = server.url
    client = redis.Redis.from_url(redis_url)
    print(
        f"corpus: {args.bodies} signed {args.kind} bodies; Redis {redis_url}"
        f" appendonly={client.config_get('appendonly')['appendonly']}"
        f" appendfsync={client.config_get('appendfsync')['appendfsync']};"
        f" load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    corpus_path = corpus.write(workdir / "corpus.txt", args.bodies, kind=args.kind)
    pairs = corpus.read(corpus_path)
    names = ["ceiling", "alternative", "service"] + ([] if args.no_workers2 else ["service-w2"])
    targets = start_targets(redis_url, corpus.SECRET.decode(), names, args.service_log_level)
    valkey_pid = server.process.pid if server is not None and server.process else None
    results: dict[str, list[Result]] = {name: [] for name in targets}
    fixed: dict[tuple[str, str], list[paced.Paced]] = {}
    try:
        for url, _ in targets.values():  # warm-up
            wrk(url, corpus_path, 2, args.connections)
        for run in range(args.runs):
            for name in names[run % len(names) :] + names[: run % len(names)]:
                client.flushall()
                url, process = targets[name]
                result = measure(
                    url, process.pid, corpus_path, args.duration, args.connections, valkey_pid
                )
                results[name].append(result)
                print(
                    f"run {run + 1} {name:<12} {result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                    f"  p99 {result.p99_ms:6.2f} ms  cpu {result.cpu_us:5.0f} us/req"
                    f" ({result.cores:.2f} cores; valkey {result.valkey_cores:.2f},"
                    f" wrk {result.wrk_cores:.2f}, idle {result.idle_cores:.2f})"
                    f"  answers {result.statuses}",
                    flush=True,
                )
        saturated = {name: statistics.median(r.rps for r in rs) for name, rs in results.items()}
        rates = {
            "half the ceiling": saturated["ceiling"] / 2,
            "half the service": saturated["service"] / 2,
        }
        order = ["ceiling", "alternative", "service"]
        for run in range(0 if args.no_paced else args.runs):
            for label, rate in rates.items():
                for name in order[run % 3 :] + order[: run % 3]:
                    if saturated[name] < rate:
                        continue  # it would only queue; reported as overloaded
                    client.flushall()
                    outcome = paced.run(targets[name][0], pairs, rate, args.duration)
                    fixed.setdefault((label, name), []).append(outcome)
                    print(f"fixed {run + 1} {name:<12} {outcome.summary()}", flush=True)
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

    report(args, results, fixed)
    return 0


def report(
    args: argparse.Namespace,
    results: dict[str, list[Result]],
    fixed: dict[tuple[str, str], list[Any]],
) -> None:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[name])

    def paced_p99(label: str, name: str) -> float | None:
        runs = fixed.get((label, name))
        return statistics.median(r.p99_ms for r in runs) if runs else None

    print(
        f"\nmedian of {args.runs} runs, {args.duration:.0f} s each, {args.connections} connections,"
        f" {args.kind} load, appendfsync {args.appendfsync}:"
    )
    labels = sorted({label for label, _ in fixed})
    print(
        f"  {'target':<12} {'req/s':>9} {'p50':>9} {'p99':>9} {'cpu/req':>9} {'per core':>9}"
        + "".join(f"  p99 @ {label:<16}" for label in labels)
    )
    for name in results:
        cells = []
        for label in labels:
            value = paced_p99(label, name)
            cells.append(f"  {'overloaded':>23}" if value is None else f"  {value:20.2f} ms")
        print(
            f"  {name:<12} {med(name, 'rps'):9.0f} {med(name, 'p50_ms'):6.2f} ms"
            f" {med(name, 'p99_ms'):6.2f} ms {med(name, 'cpu_us'):6.0f} us"
            f" {med(name, 'per_core'):9.0f}" + "".join(cells)
        )
    for label in labels:
        runs = next(runs for (lb, _), runs in fixed.items() if lb == label)
        print(f"  p99 @ {label}: {runs[0].target_rate:.0f} requests/s offered")
    service, ceiling, alt = (
        {a: med(n, a) for a in ("rps", "p99_ms", "cpu_us")}
        for n in ("service", "ceiling", "alternative")
    )
    throughput, p99 = service["rps"] / ceiling["rps"], service["p99_ms"] / ceiling["p99_ms"]
    print(f"\nservice / ceiling      throughput {throughput:.2f}x (target >= 0.75x)")
    print(f"service / ceiling      p99        {p99:.2f}x (target <= 1.5x)")
    print(f"service / alternative  throughput {service['rps'] / alt['rps']:.2f}x")
    for label in labels:
        s, c = paced_p99(label, "service"), paced_p99(label, "ceiling")
        if s is None or c is None:
            print(f"service / ceiling      p99 at {label}: service overloaded")
        else:
            print(f"service / ceiling      p99 at {label:<16} {s / c:.2f}x (fixed rate)")
    print(
        f"ceiling / service      cpu per request {ceiling['cpu_us'] / service['cpu_us']:.2f}x"
        "  (the throughput ratio the service process alone allows)"
    )
    print("cores at saturation (medians): target, valkey, wrk, idle")
    for name in results:
        print(
            f"  {name:<12} {med(name, 'cores'):.2f}  {med(name, 'valkey_cores'):.2f}"
            f"  {med(name, 'wrk_cores'):.2f}  {med(name, 'idle_cores'):.2f}"
        )
    if "service-w2" in results:
        print(
            f"service --workers 2    {med('service-w2', 'rps'):.0f} deliveries/s,"
            f" {med('service-w2', 'cores'):.2f} cores busy,"
            f" {med('service-w2', 'per_core'):.0f} deliveries/s per core"
            f" (one worker: {med('service', 'per_core'):.0f})"
        )


if __name__ == "__main__":
    sys.exit(main())
