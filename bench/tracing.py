"""What tracing costs a delivery, in process: off against the code before it, and on.

    python -m bench.tracing --base <tree> [--rounds 5] [--deliveries 4000] [--redis URL]

``<tree>`` is the code before tracing, e.g. ``git archive <commit> | tar -x -C <tree>``.
Each round runs four child processes in turn, each one pass of ``bench.inprocess``
(the webhook's ASGI app called directly, mixed fresh bodies, 32 at once, against a
real Redis, this process's CPU time per delivery):

- ``base``: the ``Receiver`` of ``<tree>`` (``PYTHONPATH=<tree>``);
- ``off``: this tree's, as ``create_app`` mounts it with FANOUT_TRACING off;
- ``on``: this tree's ``TracedReceiver``, its spans batched (``BatchSpanProcessor``)
  to an exporter that encodes them as OTLP protobuf and drops the bytes: the SDK's
  and the exporter's CPU without a collector's network; flushed before the clock stops;
- ``sampled``: as ``on``, with 1 delivery in 10 sampled (``TraceIdRatioBased(0.1)``,
  what OTEL_TRACES_SAMPLER=traceidratio with OTEL_TRACES_SAMPLER_ARG=0.1 makes).

It prints each round and the median ratios to base. Rounds alternate so
the machine's load falls on every variant alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("base", "off", "on", "sampled")


def _exporter() -> Any:
    """A span exporter that does an OTLP exporter's encoding and sends nothing."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Encoding(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            encode_spans(spans).SerializePartialToString()
            return SpanExportResult.SUCCESS

    return Encoding()


async def one_pass(url: str, variant: str, deliveries: int, concurrency: int) -> float:
    """CPU microseconds per delivery of one pass of ``variant`` under a fresh prefix."""
    from bench import corpus
    from bench.inprocess import _deliver, _scope
    from service.config import Durability, Secret, Settings
    from service.http import signature
    from service.http.receiver import Receiver
    from service.streams import connection
    from service.streams.publisher import Publisher

    bodies = corpus.mixed(deliveries)
    lines = [(signature.sign(body, corpus.SECRET).encode(), body) for body in bodies]
    prefix = f"bench-tracing-{secrets.token_hex(4)}"
    settings = Settings(
        redis_url=url,
        secrets=(Secret(corpus.SECRET.decode()),),
        stream_prefix=prefix,
        durability=Durability("none"),
    )
    client = connection.from_settings(settings)
    provider = None
    try:
        publisher = Publisher.from_settings(client, settings)
        app: Receiver
        if variant in ("on", "sampled"):
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON, TraceIdRatioBased

            from service.http.tracing import TracedReceiver

            sampler = ALWAYS_ON if variant == "on" else TraceIdRatioBased(0.1)
            provider = TracerProvider(sampler=sampler)
            provider.add_span_processor(BatchSpanProcessor(_exporter()))
            app = TracedReceiver(settings, publisher, provider=provider)
        else:
            app = Receiver(settings, publisher)
        await _deliver(app, _scope(*lines[0][::-1]), lines[0][1])  # loads the scripts
        scopes = [(_scope(body, signed), body) for signed, body in lines[1:]]
        parent = [(b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
        for scope, _ in scopes[::2]:  # half of them sent with a trace context
            scope["headers"] = [*scope["headers"], *parent]
        gc.freeze()  # as the app does once started (http/app.py): what start-up made stays
        started = time.process_time()
        for start in range(0, len(scopes), concurrency):
            wave = scopes[start : start + concurrency]
            answers = await asyncio.gather(*(_deliver(app, s, b) for s, b in wave))
            assert set(answers) <= {200, 202}, answers
        if provider is not None:
            provider.force_flush()
        spent = time.process_time() - started
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
    finally:
        if provider is not None:
            provider.shutdown()
        await client.aclose()
    return spent / len(scopes) * 1e6


def _child(args: argparse.Namespace) -> None:
    import service

    spent = asyncio.run(one_pass(args.redis, args.variant, args.deliveries, args.concurrency))
    print(json.dumps({"us": spent, "service": str(Path(service.__file__).parent.parent)}))


def _run(variant: str, tree: Path, args: argparse.Namespace, url: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "OTEL_"))}
    # The tree's `service` and `bench.corpus` first; this file's own code by its path.
    env["PYTHONPATH"] = str(tree)
    command = [sys.executable, str(Path(__file__)), "--variant", variant, "--redis", url]
    command += ["--deliveries", str(args.deliveries), "--concurrency", str(args.concurrency)]
    ran = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = json.loads(ran.stdout.splitlines()[-1])
    assert Path(found["service"]).resolve() == tree.resolve(), found
    return float(found["us"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, help="a tree of the code before tracing")
    parser.add_argument("--redis", help="Redis URL (default: an embedded Valkey)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--deliveries", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return _child(args)
    if args.base is None:
        parser.error("--base is required")
    with tempfile.TemporaryDirectory() as folder:
        url, server = args.redis, None
        if url is None:
            from service.streams.embedded import EmbeddedValkey

            server = EmbeddedValkey(Path(folder))
            url = server.start()
        try:
            rounds = []
            for n in range(args.rounds):
                figures = {
                    v: _run(v, args.base if v == "base" else ROOT, args, url) for v in VARIANTS
                }
                rounds.append(figures)
                print(
                    f"round {n + 1}: us of CPU per delivery: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
                    + "; "
                    + ", ".join(
                        f"{k}/base {figures[k] / figures['base']:.3f}" for k in VARIANTS[1:]
                    ),
                    flush=True,
                )
        finally:
            if server is not None:
                server.stop()
    for variant in VARIANTS[1:]:
        ratios = [r[variant] / r["base"] for r in rounds]
        print(
            f"{variant}/base: median {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}) over {len(rounds)} rounds of "
            f"{args.deliveries} deliveries (mixed, {args.concurrency} at once, half with a "
            "traceparent header)"
        )


if __name__ == "__main__":
    main()
