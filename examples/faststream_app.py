"""A FastStream app on the service's streams: its handlers get this library's typed events.

    pip install 'voucherify-fanout[faststream]'
    FANOUT_REDIS_URL=$(fanout url --password) python examples/faststream_app.py
    fanout send --sample VOUCHERS.IMPORT --status FAILED     # in another terminal

One line per event. A new group starts at the end of the stream (FastStream's
choice): it sees what is published from its first start on. What a raise does
here (FastStream's ack policy) is not what it does under ``service.Consumer``:
docs/consumers.md, "FastStream".
"""

from __future__ import annotations

import asyncio
import os
import socket

from faststream import FastStream
from faststream.redis import RedisBroker, StreamSub

from service import CompletionEvent, StreamEvent, WebhookEvent
from service.faststream import decoder, stream
from service.results import VoucherImportResult
from service.webhook_data import EventVoucherPublishedData

PREFIX = os.environ.get("FANOUT_STREAM_PREFIX", "voucherify")
#: Each member of a group needs a name of its own.
CONSUMER = f"{socket.gethostname()}-{os.getpid()}"

broker = RedisBroker(os.environ.get("FANOUT_REDIS_URL", "redis://127.0.0.1:6379/0"))
app = FastStream(broker)


@broker.subscriber(
    stream=StreamSub(stream("VOUCHERS.IMPORT", prefix=PREFIX), group="billing", consumer=CONSUMER),
    decoder=decoder,
)
async def on_import(event: StreamEvent) -> None:
    match event:
        case CompletionEvent(result=VoucherImportResult(failed=failed)):
            rows = "; ".join(f"{row.code}: {row.reason}" for row in failed or [])
            print(
                f"{event.type} {event.id} {event.status}: {len(failed or [])} failed ({rows})",
                flush=True,
            )


@broker.subscriber(
    stream=StreamSub(stream("voucher.published", prefix=PREFIX), group="crm", consumer=CONSUMER),
    decoder=decoder,
)
async def on_published(event: StreamEvent) -> None:
    match event:
        case WebhookEvent(data=EventVoucherPublishedData(voucher=voucher)) if voucher:
            print(f"{event.type} {event.id}: voucher {voucher.code}", flush=True)


if __name__ == "__main__":
    asyncio.run(app.run())
