"""FANOUT_MEMORY_LIMIT decides where deliveries and /readyz turn 503 (issue 31).

Before, the only readiness case set maxmemory to 1 byte: any threshold formula, and the
default 90% used in place of the setting, passed it. Here the server's used memory sits
between two thresholds in turn, 10 points below the limit then 10 above, so a formula
off by its percent, inverted or ignoring the setting fails one side. A few MB of data
make the used memory what moves the ratio, not a client's buffers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from service.config import Settings
from service.domain import samples
from tests.support.http import SECRET, post, serving
from tests.support.servers import FanoutProcess, ValkeyProcess

pytestmark = pytest.mark.spawns

#: Data written before the thresholds are set: about 4 MiB.
PAD_KEYS, PAD_BYTES = 64, 65_536


async def padded_used_memory(admin: Redis) -> int:
    async with admin.pipeline(transaction=False) as pipe:
        for n in range(PAD_KEYS):
            pipe.set(f"pad:{n}", b"p" * PAD_BYTES)
        await pipe.execute()
    return int((await admin.info("memory"))["used_memory"])


async def readiness_becomes(http: httpx.AsyncClient, status: int, why: str) -> httpx.Response:
    """/readyz polled until it answers ``status``; the memory is sampled once a second,
    so 5 s without it is an assertion that fails, naming ``why``."""
    for _ in range(50):
        ready = await http.get("/readyz")
        if ready.status_code == status:
            return ready
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz still {ready.status_code} ({ready.text}), not {status}: {why}")


async def check_threshold(http: httpx.AsyncClient, admin: Redis, limit: int) -> None:
    """Used memory at ``limit`` + 10 percent of maxmemory: refused; at ``limit`` - 10: taken."""
    used = await padded_used_memory(admin)
    await admin.config_set("maxmemory", used * 100 // (limit + 10))
    full = await readiness_becomes(http, 503, f"used at {limit + 10}% of maxmemory")
    assert f"FANOUT_MEMORY_LIMIT={limit}%" in full.json()["detail"]
    refused = await post(http, samples.sample("ORDERS.IMPORT"))
    assert refused.status_code == 503 and refused.headers["retry-after"]
    await admin.config_set("maxmemory", used * 100 // (limit - 10))
    await readiness_becomes(http, 200, f"used at {limit - 10}% of maxmemory")
    assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202


async def test_readiness_turns_at_the_limit_on_either_side_of_the_used_memory(
    settings: Settings, tmp_path: Path
) -> None:
    with ValkeyProcess(tmp_path / "v") as server:
        admin = Redis.from_url(server.url)
        own = dataclasses.replace(settings, redis_url=server.url, memory_limit=75)
        try:
            async with serving(own) as http:
                await check_threshold(http, admin, 75)
        finally:
            await admin.aclose()


async def test_fanout_serve_refuses_deliveries_at_the_memory_limit_it_is_given(
    tmp_path: Path, prefix: str
) -> None:
    # As an operator sets it: the variable, through `fanout serve`, to the publisher.
    with ValkeyProcess(tmp_path / "v") as server:
        env = {
            "FANOUT_REDIS_URL": server.url,
            "FANOUT_SECRETS": SECRET,
            "FANOUT_STREAM_PREFIX": prefix,
            "FANOUT_MEMORY_LIMIT": "50",  # at the default 90, 60% used would be taken
        }
        fanout = FanoutProcess(tmp_path / "fanout.log", env=env)
        fanout.start()
        admin = Redis.from_url(server.url)
        try:
            async with httpx.AsyncClient(base_url=fanout.base_url, timeout=10) as http:
                await check_threshold(http, admin, 50)
        finally:
            await admin.aclose()
            await asyncio.to_thread(fanout.stop)
