"""The dashboard's live feed without a browser: what it reads from Redis, in both protocols."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import msgspec

from service.config import Settings
from service.domain import actions, outbound, samples
from service.http.dashboard import Dashboard
from service.streams import connection
from service.streams.publisher import Publisher


async def test_live_feed_reads_resp3_replies(settings: Settings) -> None:
    """``?protocol=3``: XREAD answers a map, not a list; the feed reads both."""
    assert settings.redis_url is not None
    url = settings.redis_url + ("&" if "?" in settings.redis_url else "?") + "protocol=3"
    resp3 = dataclasses.replace(settings, redis_url=url)
    client = connection.from_settings(resp3)
    publisher = Publisher.from_settings(client, resp3)
    feed = Dashboard(resp3, publisher)._feed()
    try:
        assert await anext(feed) == b"retry: 2000\n\n"
        assert (await anext(feed)).startswith(b"event: stats")
        await asyncio.sleep(0.01)  # the feed starts after the current millisecond
        action = actions.decode(msgspec.json.encode(samples.sample("VOUCHERS.IMPORT")))
        await publisher.publish(outbound.publication(action, datetime.now(UTC)))
        async with asyncio.timeout(10):
            chunk = await anext(feed)
            while not chunk.startswith(b"event: entry"):
                chunk = await anext(feed)
        assert b'"type":"VOUCHERS.IMPORT"' in chunk and action.id.encode() in chunk
    finally:
        await feed.aclose()
        await client.aclose()
