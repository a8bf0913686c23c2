"""The latest refused deliveries, kept in a capped stream for the operator."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.streams import refusals
from service.streams.keys import Keys
from tests.support.servers import ValkeyProcess


def _refusal(n: int) -> refusals.Refusal:
    return refusals.Refusal(
        at=f"2026-12-04T10:00:{n % 60:02d}.000Z",
        status=401,
        reason="invalid_signature",
        detail="signature does not match the body for any configured secret",
        peer="203.0.113.9",
        path="/webhooks/voucherify",
        headers="host,content-type,x-voucherify-signature",
    )


async def test_the_stream_is_capped_and_has_no_ttl(redis: Redis, keys: Keys) -> None:
    kept = refusals.Refusals(redis, keys)
    for n in range(refusals.LATEST + 25):
        kept.count("invalid_signature")
        kept.note(_refusal(n))
    await kept.flush()
    key = keys.refusals_latest()
    assert await redis.xlen(key) == refusals.LATEST
    # Nothing evictable under a volatile-* maxmemory policy: no TTL on the key.
    assert await redis.ttl(key) == -1
    newest = await refusals.latest(redis, keys, count=2)
    assert [r.at for _, r in newest] == [_refusal(refusals.LATEST + 24).at, _refusal(223).at]
    assert newest[0][1] == _refusal(refusals.LATEST + 24)


@pytest.mark.spawns
async def test_refusals_noted_while_redis_is_down_arrive_when_it_is_back(tmp_path: Path) -> None:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    client = Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    keys = Keys("t")
    kept = refusals.Refusals(client, keys, timeout=1)
    try:
        server.stop()
        kept.note(_refusal(1))
        await kept.flush()  # fails: kept in memory
        kept.note(_refusal(2))
        server.start()
        await kept.flush()
        found = await refusals.latest(client, keys)
    finally:
        await client.aclose()
        server.stop()
    assert [r for _, r in found] == [_refusal(2), _refusal(1)]
