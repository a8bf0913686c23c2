"""A consumer process whose handler announces each event and then hangs, for kill tests.

python tests/support/stuck_consumer.py URL PREFIX GROUP NAME
"""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis

from service.consumer import Consumer
from service.domain.completion import CompletionEvent


async def main(url: str, prefix: str, group: str, name: str) -> None:
    redis = Redis.from_url(url)

    async def handle(event: CompletionEvent) -> None:
        print(f"handling {event.id}", flush=True)
        await asyncio.Event().wait()

    consumer = Consumer(
        redis,
        group,
        prefix=prefix,
        name=name,
        types=["VOUCHERS.IMPORT"],
        handler_timeout=60,
        min_idle=61,
        block=0.2,
    )
    await consumer.run(handle)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
