"""The reconciler against a fake Voucherify API: what lands in the streams, and at what cost."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from service.config import PollSettings, Secret, Settings
from service.domain import actions, outbound, samples
from service.reconciler.poller import LeaseBusy, Poller
from service.reconciler.voucherify_api import AuthError, Backoff, VoucherifyAPI
from service.streams.keys import Keys
from service.streams.publisher import Publisher
from tests.support.fake_voucherify import (
    APP_ID,
    APP_TOKEN,
    FakeVoucherify,
    Fault,
    completed_ids,
    mixed,
    stream_ids,
)
from tests.support.http import post, serving

FAST = Backoff(attempts=4, base=0.01, cap=0.05)


def poll_settings(base_url: str, **changes: Any) -> PollSettings:
    fields = {
        "api_url": base_url,
        "app_id": APP_ID,
        "app_token": Secret(APP_TOKEN),
        "rate": 2000.0,
        "page_size": 50,
        "timeout": 2.0,
    }
    return PollSettings(**(fields | changes))


@contextlib.asynccontextmanager
async def make_poller(
    settings: Settings,
    redis: Redis,
    api_url: str,
    *,
    backoff: Backoff = FAST,
    lease_ttl: float = 5.0,
    **changes: Any,
) -> AsyncIterator[Poller]:
    poll = poll_settings(api_url, **changes)
    publisher = Publisher.from_settings(redis, settings)
    async with VoucherifyAPI(poll, backoff=backoff) as api:
        yield Poller(
            publisher,
            api,
            page_size=poll.page_size,
            overlap=timedelta(minutes=1),
            lease_ttl=lease_ttl,
        )


async def test_backfill_of_1000_actions_publishes_each_completion_once(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    actions = fake.populate(1000, status_of=mixed)
    done = completed_ids(actions)
    running = {a["id"] for a in actions} - done
    async with make_poller(settings, redis, api_url) as poller:
        report = await poller.run_once()

    completed = await stream_ids(redis, keys)
    assert set(completed) == done and set(completed.values()) == {1}
    progress = await stream_ids(redis, keys, "progress")
    assert set(progress) == running and set(progress.values()) == {1}
    # One detail per completion, and list pages of 50 (plus the boundary re-read).
    assert fake.calls["detail"] == len(done) == 920
    assert 20 <= fake.calls["list"] <= 22
    assert report.published == 920 and report.progress == 80 and report.listed == 1000
    assert report.api_calls == fake.calls["list"] + fake.calls["detail"]

    # The published event carries the detail's result, which the list lacks.
    entry = (await redis.xrange(keys.completed("VOUCHERS.IMPORT"), count=1))[0][1]
    event = json.loads(entry[b"event"])
    assert event["result"]["done_count"] == 40 and event["schema"] == 1


async def test_webhook_before_and_after_polling_still_one_entry_each(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    actions = fake.populate(200, status_of=mixed)
    done = completed_ids(actions)
    finished = [a for a in actions if a["id"] in done]
    async with serving(settings) as client:
        for action in finished[:60]:
            assert (await post(client, action)).status_code == 202
        async with make_poller(settings, redis, api_url) as poller:
            report = await poller.run_once()
        answers = Counter([(await post(client, action)).status_code for action in actions])

    # The 60 the webhook delivered were not fetched again; the rest were.
    assert fake.calls["detail"] == len(done) - 60 == report.published
    assert report.already == 60
    # Afterwards every delivery is a duplicate (progress included: already seen or stale).
    assert answers == Counter({200: 200})
    counts = await stream_ids(redis, keys)
    assert set(counts) == done and set(counts.values()) == {1}
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_429_waits_for_retry_after_and_5xx_is_retried(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    actions = fake.populate(30)
    fake.faults.extend([Fault("500"), Fault("500"), Fault("429", seconds=1, path="detail")])
    async with make_poller(settings, redis, api_url) as poller:
        started = time.monotonic()
        report = await poller.run_once()
        elapsed = time.monotonic() - started

    assert set((await stream_ids(redis, keys)).values()) == {1}
    assert len(await stream_ids(redis, keys)) == len(completed_ids(actions))
    assert report.failed == 0
    # Two 500s on the first list call, then a 429 on the first detail: three extra calls.
    assert fake.calls["list"] == 1 + 2 and fake.calls["detail"] == len(actions) + 1
    # The request after the 429 came no sooner than its Retry-After said.
    gaps = [b - a for a, b in zip(fake.request_times, fake.request_times[1:], strict=False)]
    assert max(gaps) >= 0.95
    assert 0.95 <= elapsed < 5


async def test_slow_answers_time_out_and_are_retried(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    actions = fake.populate(5)
    fake.faults.extend([Fault("slow", seconds=1.0, path="list"), Fault("slow", 1.0, "detail")])
    async with make_poller(settings, redis, api_url, timeout=0.3) as poller:
        report = await poller.run_once()
    assert report.published == len(completed_ids(actions)) == 5
    assert fake.calls["list"] == 2 and fake.calls["detail"] == 6


async def test_a_detail_that_keeps_failing_holds_the_mark_and_is_retried(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    actions = fake.populate(20)
    stubborn = actions[12]
    fake.broken_ids.add(stubborn["id"])
    async with make_poller(settings, redis, api_url) as poller:
        first = await poller.run_once()
        assert first.failed == 1 and first.published == 19
        assert fake.calls["detail"] == 19 + FAST.attempts
        # Everything older than the failed action is done: the mark waits at it.
        assert first.mark == datetime.fromisoformat(stubborn["created_at"])
        fake.broken_ids.clear()
        fake.calls.clear()
        second = await poller.run_once()
    assert fake.calls["detail"] == 1
    assert second.failed == 0 and second.published == 1 and second.already == 12
    assert second.mark is not None and second.mark > first.mark
    counts = await stream_ids(redis, keys)
    assert len(counts) == 20 and set(counts.values()) == {1}


async def test_bad_detail_goes_to_dead_letters_and_the_rest_is_published(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    actions = fake.populate(10)
    unknown = dict(actions[2], type="GIFTS.TELEPORT")
    fake.bad_details[actions[2]["id"]] = json.dumps(unknown).encode()
    broken = dict(actions[5], result={"done_count": "many"})
    fake.bad_details[actions[5]["id"]] = json.dumps(broken).encode()
    async with make_poller(settings, redis, api_url) as poller:
        report = await poller.run_once()
        nothing_new = await poller.run_once()
        again = await poller.run_once(since=datetime.now(UTC) - timedelta(days=1))

    assert report.dead == 2 and report.published == 8
    assert nothing_new.listed == 0
    letters = await redis.xrange(keys.dead_letters())
    reasons = sorted(fields[b"reason"].decode() for _, fields in letters)
    assert reasons == ["invalid_payload", "unknown_type"]
    assert any(b"done_count" in fields[b"detail"] for _, fields in letters)
    # Dead-lettered actions do not hold the mark back; a backfill stores them once.
    assert again.dead == 2 and again.published == 0
    assert await redis.xlen(keys.dead_letters()) == 2
    assert len(await stream_ids(redis, keys)) == 8


async def test_restart_resumes_from_the_mark_and_catches_late_completions(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    actions = fake.populate(400)
    late = actions[200]
    late.update(status="IN_PROGRESS", progress=60, operation_status="UNKNOWN")
    del late["result"]
    async with make_poller(settings, redis, api_url) as poller:
        first = await poller.run_once()
    assert first.mark == datetime.fromisoformat(late["created_at"])
    first_lists = fake.calls["list"]

    fake.calls.clear()
    async with make_poller(settings, redis, api_url) as restarted:  # a new process
        second = await restarted.run_once()
    # Only the pages down to the unfinished action are listed; no detail is fetched.
    assert fake.calls["detail"] == 0
    assert (first_lists, fake.calls["list"], second.pages) == (9, 5, 5)
    assert second.published == 0 and second.already == 200

    fake.complete(late["id"])
    new = fake.populate(3, newest=datetime.now(UTC) - timedelta(minutes=2), first=400)
    fake.calls.clear()
    async with make_poller(settings, redis, api_url) as restarted:
        third = await restarted.run_once()
    assert fake.calls["detail"] == 1 + len(new)
    assert third.published == 4
    assert third.mark is not None and third.mark > datetime.now(UTC) - timedelta(minutes=2)
    counts = await stream_ids(redis, keys)
    assert counts[late["id"]] == 1 and len(counts) == 403
    # The progress it made before completing is in the progress stream, once.
    assert (await stream_ids(redis, keys, "progress"))[late["id"]] == 1

    fake.calls.clear()
    async with make_poller(settings, redis, api_url) as restarted:
        fourth = await restarted.run_once()
    assert fake.calls == Counter({"list": 1}) and fourth.listed == 0


async def test_two_pollers_publish_once_without_doubling_api_calls(
    settings: Settings,
    redis: Redis,
    keys: Keys,
    fake: FakeVoucherify,
    api_url: str,
    prefix: str,
) -> None:
    actions = fake.populate(300)
    alone = dataclasses.replace(settings, stream_prefix=f"{prefix}solo")
    try:
        async with make_poller(alone, redis, api_url) as poller:
            await poller.run_once()
    finally:
        async for key in redis.scan_iter(match=f"{prefix}solo:*", count=1000):
            await redis.delete(key)
    one_poller = fake.calls["list"] + fake.calls["detail"]

    fake.calls.clear()
    async with (
        make_poller(settings, redis, api_url) as first,
        make_poller(settings, redis, api_url) as second,
    ):
        reports = await asyncio.gather(first.run_once(), second.run_once())
    two_pollers = fake.calls["list"] + fake.calls["detail"]

    counts = await stream_ids(redis, keys)
    assert set(counts) == completed_ids(actions) and set(counts.values()) == {1}
    # The second waited for the lease, then found one page of nothing to do.
    assert one_poller < two_pollers <= one_poller + 1
    assert sorted(r.published for r in reports) == [0, 300]


async def test_two_daemons_one_polls_the_other_takes_over(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    fake.populate(40)
    async with (
        make_poller(settings, redis, api_url, lease_ttl=0.6) as a,
        make_poller(settings, redis, api_url, lease_ttl=0.6) as b,
    ):
        task_a = asyncio.create_task(a.run_forever(0.1))
        await asyncio.sleep(0.05)
        task_b = asyncio.create_task(b.run_forever(0.1))
        await asyncio.sleep(0.8)
        assert a.lease.held and not b.lease.held
        b_calls = b._api.calls
        assert b_calls == 0
        task_a.cancel()  # a leaves, releasing the lease
        await asyncio.gather(task_a, return_exceptions=True)
        fake.populate(
            2,
            newest=datetime.now(UTC) - timedelta(seconds=5),
            spacing=timedelta(seconds=1),
            first=40,
        )
        for _ in range(60):  # up to 3 s for b to take over and poll
            if len(await stream_ids(redis, keys)) == 42:
                break
            await asyncio.sleep(0.05)
        task_b.cancel()
        await asyncio.gather(task_b, return_exceptions=True)
        assert b._api.calls > 0
    assert len(await stream_ids(redis, keys)) == 42
    assert await redis.exists(keys.poll_lease()) == 0, "released on the way out"


async def test_once_gives_up_when_the_lease_stays_busy(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    await redis.set(keys.poll_lease(), "someone-else", px=5000)
    async with make_poller(settings, redis, api_url) as poller:
        with pytest.raises(LeaseBusy, match="another poller"):
            await poller.run_once(wait=0.3)
    assert fake.calls == Counter()


async def test_wrong_token_fails_fast_without_printing_it(
    settings: Settings, redis: Redis, fake: FakeVoucherify, api_url: str
) -> None:
    fake.populate(3)
    async with make_poller(settings, redis, api_url, app_token=Secret("wrong-token")) as poller:
        with pytest.raises(AuthError) as caught:
            await poller.run_once()
    assert fake.calls["list"] == 1, "a 401 is not retried"
    assert "wrong-token" not in str(caught.value)
    assert "FANOUT_VOUCHERIFY_APP_TOKEN" in str(caught.value)


async def test_an_action_stuck_in_progress_holds_the_mark_no_longer_than_the_lookback(
    settings: Settings, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> None:
    now = datetime.now(UTC)
    stuck = fake.populate(1, newest=now - timedelta(days=10), status_of=lambda n: "IN_PROGRESS")
    recent = fake.populate(5, newest=now - timedelta(days=1), spacing=timedelta(hours=1), first=1)
    await redis.set(keys.poll_mark(), stuck[0]["created_at"])  # held by it for 10 days
    async with make_poller(settings, redis, api_url) as poller:  # lookback: 7 days
        report = await poller.run_once()
    assert report.published == len(recent) and report.unfinished == 0
    assert report.mark is not None and report.mark > now - timedelta(minutes=2)
    assert await poller.mark() == report.mark


async def test_the_publisher_answers_already_published(redis: Redis, settings: Settings) -> None:
    # The poller asked Redis itself (EXISTS on the seen key); now it asks the publisher.
    publisher = Publisher.from_settings(redis, settings)
    action = actions.decode(msgspec.json.encode(samples.sample("ORDERS.IMPORT")))
    assert not await publisher.published(action.type, action.id, action.request_id)
    await publisher.publish(outbound.publication(action, datetime.now(UTC)))
    assert await publisher.published(action.type, action.id, action.request_id)
    assert not await publisher.published(action.type, action.id, "another request")
