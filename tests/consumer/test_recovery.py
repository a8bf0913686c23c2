"""The consumer through failures: a member killed mid-handler, the group lost to FLUSHALL,
the server restarted under it. Nothing is lost, nothing is handled twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.domain.completion import CompletionEvent
from service.streams.keys import Keys
from tests.consumer.test_consumer import consumer, pending
from tests.support.feed import append, running, until
from tests.support.servers import ValkeyProcess

pytestmark = pytest.mark.spawns

ROOT = Path(__file__).resolve().parents[2]


async def test_a_consumer_killed_mid_handler_loses_nothing(
    redis: Redis, keys: Keys, redis_url: str
) -> None:
    type_ = "VOUCHERS.IMPORT"
    stream = keys.completed(type_)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "support" / "stuck_consumer.py"),
        redis_url,
        keys.prefix,
        "g",
        "doomed",
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        [id_] = await append(redis, keys, type_, 1)
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.decode().strip() == f"handling {id_}"
    finally:
        process.kill()  # SIGKILL: no chance to ack or to clean up
        await process.wait()
    killed_at = time.monotonic()
    [row] = await redis.xpending_range(stream, "g", min="-", max="+", count=10)
    assert row["consumer"] == b"doomed"

    handled: list[tuple[str, float]] = []

    async def handle(event: CompletionEvent) -> None:
        handled.append((event.id, time.monotonic()))

    async with running(consumer(redis, keys, "g", name="survivor", types=[type_]), handle):
        await until(lambda: handled, within=10)
    [(got, at)] = handled
    print(f"killed consumer's entry handled by another {at - killed_at:.2f}s after the kill")
    assert got == id_
    assert at - killed_at < 5
    assert await pending(redis, stream, "g") == 0


async def test_flushall_under_a_running_consumer_recovers(tmp_path: Path) -> None:
    server = ValkeyProcess(tmp_path / "own")
    server.start()
    client = Redis.from_url(server.url)
    keys = Keys("flush")
    try:
        seen: list[str] = []

        async def handle(event: CompletionEvent) -> None:
            seen.append(event.id)

        async with running(consumer(client, keys, "g", types=["ORDERS.IMPORT"]), handle):
            [first] = await append(client, keys, "ORDERS.IMPORT", 1)
            await until(lambda: seen == [first])
            await client.flushall()
            await asyncio.sleep(0.3)  # the consumer meets NOGROUP and creates the group again
            [second] = await append(client, keys, "ORDERS.IMPORT", 1)
            await until(lambda: seen == [first, second], within=10)
        assert await pending(client, keys.completed("ORDERS.IMPORT"), "g") == 0
    finally:
        await client.aclose()
        server.stop()


async def test_redis_restart_under_a_running_consumer_recovers(tmp_path: Path) -> None:
    server = ValkeyProcess(tmp_path / "own")
    server.start()
    client = Redis.from_url(server.url)
    keys = Keys("restart")
    try:
        seen: list[str] = []

        async def handle(event: CompletionEvent) -> None:
            seen.append(event.id)

        async with running(consumer(client, keys, "g", types=["ORDERS.IMPORT"]), handle):
            server.stop()
            await asyncio.sleep(0.3)
            server.start()  # no persistence: streams and group are gone
            [after] = await append(client, keys, "ORDERS.IMPORT", 1)
            await until(lambda: seen == [after], within=10)
    finally:
        await client.aclose()
        server.stop()
