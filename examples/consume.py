"""Consume completion events with a consumer group and react per type.

    python examples/consume.py --redis-url redis://127.0.0.1:6379/0 --group billing

Stops on Ctrl-C (after the handlers in flight finish), or after --count events.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from redis.asyncio import Redis

from service import CompletionEvent, Consumer, OrderImportResult, VoucherImportResult


async def main(url: str, group: str, prefix: str, count: int | None) -> None:
    redis = Redis.from_url(url)
    consumer = Consumer(redis, group, prefix=prefix)
    seen = 0

    async def handle(event: CompletionEvent) -> None:
        nonlocal seen
        match event.result:  # the result's class is the one of the event's type
            case VoucherImportResult(failed_count=failed) | OrderImportResult(failed_count=failed):
                print(f"{event.type} {event.id} {event.status}: {failed} failed", flush=True)
            case _:
                print(
                    f"{event.type} {event.id} {event.status}: {event.done_count} done", flush=True
                )
        seen += 1
        if count is not None and seen >= count:
            consumer.stop()

    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, consumer.stop)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, consumer.stop)
    try:
        await consumer.run(handle)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--group", default="example")
    parser.add_argument("--prefix", default="voucherify")
    parser.add_argument("--count", type=int, help="stop after this many events")
    args = parser.parse_args()
    asyncio.run(main(args.redis_url, args.group, args.prefix, args.count))
