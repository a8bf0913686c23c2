"""What tracing costs ``fanout serve`` over HTTP: wrk against the service, off and on.

    python -m bench.tracing_http [--runs 3] [--duration 8] [--connections 32]

One Valkey started here (AOF on, ``appendfsync always``, as ``bench.run``), emptied
before each run, and ``bench.corpus``'s fresh mixed bodies. Two ``fanout serve`` (one
worker, the defaults): ``off``, and ``on`` (FANOUT_TRACING=1) exporting its spans over
OTLP/HTTP to ``bench.ceiling`` (a bare endpoint answering 202, which the exporter takes
as accepted), so the SDK's batching, encoding and sending all run in the service's
process. Runs alternate, the order rotating; each prints req/s, p50, p99 and the
service's CPU per request (its processes' CPU time), then the medians and on/off.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

import redis

from bench import corpus
from bench.run import Result, measure, parser, wrk
from bench.targets import start_targets
from tests.support.servers import ValkeyProcess


def main() -> None:
    args = parser(__doc__).parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fanout-tracing-"))
    server = ValkeyProcess(workdir / "valkey", appendonly=True, appendfsync="always")
    server.start()
    client = redis.Redis.from_url(server.url)
    secret = corpus.SECRET.decode()
    targets = {}
    try:
        corpus_path = corpus.write(workdir / "corpus.txt", args.bodies)
        [(sink, _)] = start_targets(server.url, secret, ["ceiling"]).values()
        targets["off"] = start_targets(server.url, secret, ["service"])["service"]
        traced = {
            "FANOUT_TRACING": "1",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{sink}/webhooks/voucherify",
        }
        targets["on"] = start_targets(server.url, secret, ["service"], env_extra=traced)["service"]
        for url, _ in targets.values():  # warm-up
            wrk(url, corpus_path, 2, args.connections)
        results: dict[str, list[Result]] = {name: [] for name in targets}
        names = list(targets)
        for run in range(args.runs):
            for name in names[run % 2 :] + names[: run % 2]:
                client.flushall()
                url, process = targets[name]
                result = measure(url, process.pid, corpus_path, args.duration, args.connections)
                results[name].append(result)
                print(
                    f"run {run + 1} {name:<3} {result.rps:8.0f} req/s  p50 {result.p50_ms:.2f} ms"
                    f"  p99 {result.p99_ms:.2f} ms  {result.cpu_us:.0f} us CPU/request",
                    flush=True,
                )
    finally:
        for _, process in targets.values():
            process.terminate()
            process.wait(10)
        client.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {
        name: (
            statistics.median(r.rps for r in runs),
            statistics.median(r.cpu_us for r in runs),
            statistics.median(r.p99_ms for r in runs),
        )
        for name, runs in results.items()
    }
    for name, (rps, cpu, p99) in medians.items():
        print(f"{name}: median {rps:.0f} req/s, {cpu:.0f} us CPU/request, p99 {p99:.2f} ms")
    ratios = [a / b for a, b in zip(medians["on"], medians["off"], strict=True)]
    print(f"on/off: req/s {ratios[0]:.2f}x, CPU/request {ratios[1]:.2f}x, p99 {ratios[2]:.2f}x")


if __name__ == "__main__":
    main()
