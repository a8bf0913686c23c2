"""Replays: an authentic body whose own time lies past FANOUT_MAX_AGE is held, not published.

The signature has no timestamp, so a captured body verifies forever. Measured
before issue 25: with FANOUT_DEDUP_TTL=5 the same bytes sent again after 6.5 s
were published again, and an envelope created two months earlier was published
as new. Now such a delivery is a ``stale`` dead letter (answered 200), published
only on purpose (``fanout dlq replay``); the reconciler, which reads the API
itself, publishes what it finds missing whatever its age.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
from redis.asyncio import Redis

from service.config import Settings
from service.domain import clock, samples
from service.domain.webhook_samples import envelope
from service.streams.keys import Keys
from service.streams.replay import Replayer
from tests.reconciler.test_poller import make_poller
from tests.support.fake_voucherify import FakeVoucherify, stream_ids
from tests.support.http import dead_lettered, post, serving

TWO_MONTHS_AGO = clock.iso(datetime.now(UTC) - timedelta(days=61))


def old_envelope() -> dict[str, object]:
    body = envelope("voucher.published")
    body["event"]["created_at"] = TWO_MONTHS_AGO  # type: ignore[index]
    return body


async def test_an_envelope_two_months_old_is_stale_until_replayed(
    http: httpx.AsyncClient, redis: Redis, keys: Keys, settings: Settings
) -> None:
    body = msgspec.json.encode(old_envelope())
    first = await post(http, body)
    again = await post(http, body)  # one letter, however often it comes

    letter = await dead_lettered(first, redis, keys, body, "stale")
    assert again.json() == first.json()
    assert letter["detail"].startswith(f"event.created_at {TWO_MONTHS_AGO} is older than")
    assert await redis.xlen(keys.events("voucher.published")) == 0

    replayed = await Replayer(redis, settings).replay(first.json()["dead_letter"])  # dlq replay
    assert replayed.outcome == "accepted", replayed
    assert await redis.xlen(keys.events("voucher.published")) == 1
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_an_action_is_dated_by_its_last_update(
    http: httpx.AsyncClient, redis: Redis, keys: Keys
) -> None:
    old = samples.sample("ORDERS.IMPORT")
    old["created_at"] = old["updated_at"] = TWO_MONTHS_AGO
    running = samples.sample("ORDERS.IMPORT")  # started long ago, finished now
    running["created_at"] = TWO_MONTHS_AGO
    running["updated_at"] = clock.now()

    kept = await post(http, old)
    await dead_lettered(kept, redis, keys, msgspec.json.encode(old), "stale")
    assert kept.json()["detail"].startswith(f"updated_at {TWO_MONTHS_AGO}")
    assert (await post(http, running)).status_code == 202


async def test_a_resend_after_the_dedup_window_is_not_published_twice(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    # The measurement, with a 1 s window: the default FANOUT_MAX_AGE is the window.
    short = dataclasses.replace(settings, dedup_ttl=1)
    async with serving(short) as http:
        # Dated as it is sent (a server slow to start must not make it stale already).
        action = samples.sample("VOUCHERS.IMPORT") | {"updated_at": clock.now()}
        assert (await post(http, action)).status_code == 202
        await asyncio.sleep(1.6)  # the dedup key is gone
        resent = await post(http, action)
    await dead_lettered(resent, redis, keys, msgspec.json.encode(action), "stale")
    assert await redis.xlen(keys.completed("VOUCHERS.IMPORT")) == 1


async def test_max_age_is_its_own_setting_and_custom_bodies_are_never_stale(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    lenient = dataclasses.replace(settings, max_age=90 * 86_400)
    async with serving(lenient) as http:
        assert (await post(http, old_envelope())).status_code == 202
        custom = {"sent": TWO_MONTHS_AGO, "created_at": TWO_MONTHS_AGO}
    async with serving(settings) as http:
        assert (await post(http, custom)).status_code == 202  # no time of its own
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_the_reconciler_publishes_what_is_missing_whatever_its_age(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    # Not an HTTP delivery: it reads the API itself, where no replay can come from.
    listed = fake.populate(12, newest=datetime.now(UTC) - timedelta(days=40))
    async with serving(settings) as http:
        kept = await post(http, listed[0])  # the same action over HTTP: too old
    assert kept.json()["reason"] == "stale"
    async with make_poller(settings, redis, api_url) as poller:
        report = await poller.run_once(since=datetime.now(UTC) - timedelta(days=60))
    assert report.published == 12
    assert await stream_ids(redis, keys) == Counter(action["id"] for action in listed)
