"""Throughput benchmark: the service against the ceiling and the usual alternative.

    python -m bench.run [--runs 3] [--duration 10] [--connections 32]

In one run, with targets alternating so machine drift cancels, wrk posts unique
signed bodies of all 22 types to three servers under the same uvicorn settings
(1 worker, uvloop, httptools, no access log) and the same Redis:

- ceiling: a bare Starlette endpoint that reads the body and answers 202;
- alternative: FastAPI + pydantic v2 union + SET NX then XADD;
- service: ``fanout serve`` as users run it.

Prints requests/s, p50 and p99 per target and run, then medians and ratios.
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
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class Result:
    requests: int
    seconds: float
    bad_status: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_us: float = 0.0  # server process CPU time per request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


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
    return Result(int(requests), micros / 1e6, int(bad), int(errors), p50 / 1000, p99 / 1000)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, pid: int, corpus_path: Path, seconds: float, connections: int) -> Result:
    before = cpu_seconds(pid)
    result = wrk(url, corpus_path, seconds, connections)
    result.cpu_us = (cpu_seconds(pid) - before) / max(result.requests, 1) * 1e6
    return result


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


def start_targets(redis_url: str, secret: str) -> dict[str, tuple[str, subprocess.Popen[bytes]]]:
    env = {**os.environ, "FANOUT_REDIS_URL": redis_url, "FANOUT_SECRETS": secret}
    targets: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    for name, command in [
        ("ceiling", [*UVICORN, "bench.ceiling:app"]),
        ("alternative", [*UVICORN, "bench.alternative:app"]),
        (
            "service",
            [str(Path(sys.executable).parent / "fanout"), "serve", "--log-level", "warning"],
        ),
    ]:
        port = free_port()
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env | {"FANOUT_PORT": str(port)},
            cwd=HERE.parent,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/webhooks/voucherify", process)
        targets[name] = (f"{base}", process)
    return targets


def parser(description: str | None) -> argparse.ArgumentParser:
    """The options every wrk benchmark here takes: runs, duration, connections, bodies."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bodies", type=int, default=200_000)
    return parser


def has_wrk() -> bool:
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return False
    return True


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--redis-url", help="use this Redis (FLUSHALLed between runs!)")
    args = options.parse_args()
    if not has_wrk():
        return 1

    workdir = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    server = None
    if args.redis_url:
        redis_url = args.redis_url
    else:
        server = ValkeyProcess(workdir / "valkey")
        server.start()
        redis_url = server.url
    client = redis.Redis.from_url(redis_url)
    print(
        f"corpus: {args.bodies} signed bodies of {len(corpus.events.TYPES)} types ...", flush=True
    )
    corpus_path = corpus.write(workdir / "corpus.txt", args.bodies)
    targets = start_targets(redis_url, corpus.SECRET.decode())
    results: dict[str, list[Result]] = {name: [] for name in targets}
    try:
        for url, _ in targets.values():  # warm-up
            wrk(url, corpus_path, 2, args.connections)
        order = list(targets)
        for run in range(args.runs):
            for name in order[run % 3 :] + order[: run % 3]:
                client.flushall()
                url, process = targets[name]
                result = measure(url, process.pid, corpus_path, args.duration, args.connections)
                results[name].append(result)
                print(
                    f"run {run + 1} {name:<12} {result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                    f"  p99 {result.p99_ms:6.2f} ms  cpu {result.cpu_us:5.0f} us/req"
                    f"  non-2xx {result.bad_status}"
                    f"  socket errors {result.socket_errors}",
                    flush=True,
                )
    finally:
        for _, process in targets.values():
            process.terminate()
            process.wait(10)
        client.close()
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    med = {
        n: (
            statistics.median(r.rps for r in rs),
            statistics.median(r.p50_ms for r in rs),
            statistics.median(r.p99_ms for r in rs),
            statistics.median(r.cpu_us for r in rs),
        )
        for n, rs in results.items()
    }
    print(
        f"\nmedian of {args.runs} runs, {args.duration:.0f} s each, {args.connections} connections:"
    )
    for name, (rps, p50, p99, cpu) in med.items():
        print(
            f"  {name:<12} {rps:9.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
            f"  server cpu {cpu:5.0f} us/req"
        )
    service, ceiling, alt = med["service"], med["ceiling"], med["alternative"]
    print(f"\nservice / ceiling      throughput {service[0] / ceiling[0]:.2f}x  (target >= 0.75x)")
    print(f"service / alternative  throughput {service[0] / alt[0]:.2f}x  (target >= 5x)")
    print(f"service / ceiling      p99        {service[2] / ceiling[2]:.2f}x  (target <= 1.5x)")
    print(
        f"ceiling / service      cpu per request {ceiling[3] / service[3]:.2f}x"
        "  (the throughput ratio the service process alone allows)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
