"""What tracing costs a delivery and a handling, in process: off against the code
before it, and on.

    python -m bench.tracing [--base <tree>] [--rounds 5] [--deliveries 3000] [--redis URL]

``<tree>`` is the code before tracing, e.g. ``git archive <commit> | tar -x -C <tree>``;
without it the ratios are to ``off``. Each round runs a child process per variant in
turn. The receiver's variants run one pass of ``bench.inprocess`` (the webhook's ASGI
app called directly, mixed fresh bodies, 32 at once, against a real Redis, the
process's CPU time per delivery):

- ``base``: the ``Receiver`` of ``<tree>`` (``PYTHONPATH=<tree>``);
- ``off``: this tree's, as ``create_app`` mounts it with FANOUT_TRACING off;
- ``on``: this tree's ``TracedReceiver``, its spans batched (``BatchSpanProcessor``)
  to an exporter that encodes them as OTLP protobuf and drops the bytes: the SDK's
  and the exporter's CPU without a collector's network; flushed before the clock stops;
- ``sampled``: as ``on``, with 1 delivery in 10 sampled (``TraceIdRatioBased(0.1)``,
  what OTEL_TRACES_SAMPLER=traceidratio with OTEL_TRACES_SAMPLER_ARG=0.1 makes).

The consumer's (``consumer-base``, ``consumer-off``, ``consumer-on``): a ``Consumer``
with a handler that does nothing reads as many entries, each with a ``traceparent``
field, and acknowledges them; the process's CPU time per entry, the spans exported
as for ``on``.

It prints each round and the median ratios to base (to off without ``--base``).
Rounds alternate, and the order of the variants rotates each round, so the machine's
load falls on every variant alike.
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
VARIANTS = ("base", "off", "on", "sampled", "consumer-base", "consumer-off", "consumer-on")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


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
        parent = [(b"traceparent", TRACEPARENT.encode())]
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


async def consumer_pass(url: str, variant: str, entries: int) -> float:
    """CPU microseconds per entry a ``Consumer`` handles, under a fresh prefix."""
    from datetime import UTC, datetime

    import msgspec
    from redis.asyncio import Redis

    from service.consumer import Consumer
    from service.domain import actions, outbound, samples
    from service.streams.keys import Keys

    keys = Keys(f"bench-tracing-{secrets.token_hex(4)}")
    redis = Redis.from_url(url)
    stream = keys.completed("VOUCHERS.IMPORT")
    action = actions.decode(msgspec.json.encode(samples.sample("VOUCHERS.IMPORT")))
    fields = outbound.publication(action, datetime.now(UTC)).fields
    entry = dict(zip(fields[::2], fields[1::2], strict=True)) | {"traceparent": TRACEPARENT}
    async with redis.pipeline(transaction=False) as pipe:
        for _ in range(entries):
            pipe.xadd(stream, entry)  # type: ignore[arg-type]
        await pipe.execute()
    options: dict[str, Any] = {}
    provider = None
    if variant == "consumer-on":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_exporter()))
        options["tracer_provider"] = provider
    elif variant == "consumer-off":
        options["tracing"] = False
    handled = 0
    member = Consumer(redis, "bench", types=["VOUCHERS.IMPORT"], prefix=keys.prefix, **options)

    async def handle(event: object) -> None:
        nonlocal handled
        handled += 1
        if handled == entries:
            member.stop()

    gc.freeze()
    started = time.process_time()
    await member.run(handle)
    if provider is not None:
        provider.force_flush()
    spent = time.process_time() - started
    await redis.delete(stream)
    await redis.aclose()
    if provider is not None:
        provider.shutdown()
    return spent / entries * 1e6


def _child(args: argparse.Namespace) -> None:
    import service

    spent = asyncio.run(
        consumer_pass(args.redis, args.variant, args.deliveries)
        if args.variant.startswith("consumer")
        else one_pass(args.redis, args.variant, args.deliveries, args.concurrency)
    )
    print(json.dumps({"us": spent, "service": str(Path(service.__file__).parent.parent)}))


def _run(variant: str, tree: Path, args: argparse.Namespace, url: str) -> float:
    """One child process of ``variant`` with ``tree``'s code: its figure."""
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
    parser.add_argument("--deliveries", type=int, default=3000, help="and consumed entries")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", help="comma-separated variants (default: all)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return _child(args)
    variants = VARIANTS if args.base else tuple(v for v in VARIANTS if "base" not in v)
    if args.only:
        variants = tuple(v for v in variants if v in args.only.split(","))
    with tempfile.TemporaryDirectory() as folder:
        url, server = args.redis, None
        if url is None:
            from service.streams.embedded import EmbeddedValkey

            server = EmbeddedValkey(Path(folder))
            url = server.start()
        try:
            rounds = []
            for n in range(args.rounds):
                # The order rotates each round: no variant always runs first.
                order = variants[n % len(variants) :] + variants[: n % len(variants)]
                ran = {v: _run(v, args.base if "base" in v else ROOT, args, url) for v in order}
                figures = {v: ran[v] for v in variants}
                rounds.append(figures)
                print(
                    f"round {n + 1}: us of CPU per delivery or entry: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()),
                    flush=True,
                )
        finally:
            if server is not None:
                server.stop()
    for variant in variants:
        consumer = variant.startswith("consumer")
        against = ("consumer-" if consumer else "") + ("base" if args.base else "off")
        if variant == against:
            continue
        ratios = [r[variant] / r[against] for r in rounds]
        what = (
            "entries consumed (a handler doing nothing)"
            if consumer
            else f"deliveries (mixed, {args.concurrency} at once, half with a traceparent header)"
        )
        print(
            f"{variant}/{against}: median {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}) over {len(rounds)} rounds of "
            f"{args.deliveries} {what}"
        )


if __name__ == "__main__":
    main()
