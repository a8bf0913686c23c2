"""Helpers for the consumer tests: fill streams fast, run a consumer in a task."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import msgspec
from redis.asyncio import Redis

from service import completion, events, samples
from service.consumer import Consumer
from service.keys import Keys


def event_json(type_: str, status: str = "DONE", **overrides: object) -> tuple[str, bytes]:
    """A sample action of ``type_`` as the published event JSON; returns (action id, JSON)."""
    body = samples.sample(type_, status=status) | overrides
    action = events.decode(msgspec.json.encode(body))
    event = completion.from_action(action, datetime.now(UTC))
    return action.id, completion.encode_event(event)


async def append(
    redis: Redis, keys: Keys, type_: str, count: int, *, status: str = "DONE"
) -> list[str]:
    """Append ``count`` valid entries to the type's stream in one pipeline; their action ids."""
    stream = keys.completed(type_) if status in ("DONE", "FAILED") else keys.progress(type_)
    # One sample per call, its id swapped per entry: building a sample is slow.
    template_id, template = event_json(type_, status)
    ids = []
    pipe = redis.pipeline(transaction=False)
    for _ in range(count):
        id_ = f"aa_{secrets.token_hex(9)}"
        data = template.replace(template_id.encode(), id_.encode())
        ids.append(id_)
        fields = {"type": type_, "status": status, "id": id_, "request_id": "", "event": data}
        pipe.xadd(stream, fields)  # type: ignore[arg-type]
    await pipe.execute()
    return ids


@contextlib.asynccontextmanager
async def running(
    consumer: Consumer, handler: Callable[[completion.CompletionEvent], Awaitable[object]]
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``consumer`` in a task; stop it gracefully at exit."""
    task = asyncio.create_task(consumer.run(handler))
    ready = asyncio.create_task(consumer.wait_ready())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    try:
        yield task
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


async def until(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Poll ``predicate`` until true; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls state the test does not own
            await asyncio.sleep(0.01)
