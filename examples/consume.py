"""Consume completion events (and webhook events, with --types) with a consumer group.

    .venv/bin/python examples/consume.py       # the Redis of the `fanout serve` running here
    .venv/bin/python examples/consume.py --redis-url redis://127.0.0.1:6379/0 --group billing

Without --redis-url it uses FANOUT_REDIS_URL, else the server that `fanout serve`
recorded in .fanout/ (of this folder or a parent; FANOUT_DATA_DIR or --data-dir
point elsewhere), and says on stderr which one it connected to.
While Redis is away it says so once on stderr, and once when it is back.
Stops on Ctrl-C (after the handlers in flight finish), or after --count events.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from service import CompletionEvent, Consumer, NoRedis, StreamEvent, WebhookEvent
from service.results import OrderImportResult, VoucherImportResult


async def main(args: argparse.Namespace) -> None:
    types = {"types": args.types.split(",")} if args.types else {}
    consumer = await Consumer.connect(
        args.group, url=args.redis_url, data_dir=args.data_dir, prefix=args.prefix, **types
    )
    seen = 0

    async def handle(event: StreamEvent) -> None:
        nonlocal seen
        match event:  # the result's class is the one of the event's type
            case CompletionEvent(
                result=VoucherImportResult(failed=failed) | OrderImportResult(failed=failed)
            ):
                # `failed` is a list of typed records (or None when there were none).
                reasons = sorted({record.reason or "no reason" for record in failed or []})
                print(
                    f"{event.type} {event.id} {event.status}: {event.failed_count} failed"
                    + (f" ({', '.join(reasons)})" if reasons else ""),
                    flush=True,
                )
            case CompletionEvent():
                print(
                    f"{event.type} {event.id} {event.status}: {event.done_count} done", flush=True
                )
            case WebhookEvent():  # with --types voucher.published, …
                print(f"{event.type} {event.id}", flush=True)
        seen += 1
        if args.count is not None and seen >= args.count:
            consumer.stop()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, consumer.stop)
    loop.add_signal_handler(signal.SIGTERM, consumer.stop)
    try:
        await consumer.run(handle)
    finally:
        await consumer.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", help="default: FANOUT_REDIS_URL, else the local server")
    parser.add_argument("--data-dir", help="data folder of the local `fanout serve`")
    parser.add_argument("--group", default="example", help="consumer group (default example)")
    parser.add_argument("--prefix", help="stream prefix (default: the server's, or voucherify)")
    parser.add_argument(
        "--types",
        help="comma-separated, e.g. VOUCHERS.IMPORT,voucher.published "
        "(default: the 22 async action types)",
    )
    parser.add_argument("--count", type=int, help="stop after this many events")
    # The library's warnings (Redis lost, Redis back, a poison letter), one line each.
    logging.basicConfig(format="consume.py: %(message)s", level=logging.WARNING)
    try:
        asyncio.run(main(parser.parse_args()))
    except (NoRedis, ConnectionError) as exc:
        sys.exit(f"consume.py: {exc}")
    except KeyboardInterrupt:
        pass
