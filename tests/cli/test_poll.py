"""``fanout poll`` as a user runs it, and the reconciler inside ``fanout serve --poll``."""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import os
import signal
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from service.config import ConfigError, PollSettings, Settings
from service.domain import actions as action_types
from service.domain import outbound
from service.http.app import create_app
from service.reconciler import task
from service.reconciler.voucherify_api import retry_after
from service.streams.keys import Keys
from service.streams.publisher import Publisher
from tests.support.cli import FANOUT, command
from tests.support.fake_voucherify import (
    APP_TOKEN,
    FakeVoucherify,
    Reconciling,
    completed_ids,
    mixed,
    poll_env,
    stream_ids,
)
from tests.support.http import post
from tests.support.servers import running_uvicorn


@pytest.mark.spawns
async def test_poll_once_publishes_exactly_what_was_missing(
    reconciling: Reconciling, settings: Settings
) -> None:
    redis, fake = reconciling.redis, reconciling.fake
    actions = fake.populate(120, status_of=mixed)
    done = completed_ids(actions)
    # 30 completions reached the webhook; the rest were lost.
    publisher = Publisher.from_settings(redis, settings)
    delivered = [a for a in actions if a["id"] in done][:30]
    for body in delivered:
        action = action_types.decode(msgspec.json.encode(body))
        await publisher.publish(outbound.publication(action, datetime.now(UTC)))

    polled = await command(reconciling.env, "poll", "--once", "--page-size", "20")
    assert polled.returncode == 0, polled.stderr
    missing = len(done) - 30
    assert f"{missing} completions published" in polled.stdout
    assert fake.calls["detail"] == missing
    counts = await reconciling.published()
    assert set(counts) == done and set(counts.values()) == {1}
    running = {a["id"] for a in actions} - done
    assert set(await reconciling.published("progress")) == running
    assert APP_TOKEN not in polled.stdout + polled.stderr

    # Run again: nothing is missing any more, and nothing is fetched.
    fake.calls.clear()
    again = await command(reconciling.env, "poll", "--once", "--page-size", "20")
    assert again.returncode == 0, again.stderr
    assert "0 completions published" in again.stdout and fake.calls["detail"] == 0
    assert APP_TOKEN not in again.stdout + again.stderr


@pytest.mark.spawns
async def test_backfill_since_shows_progress_and_covers_only_the_range(
    reconciling: Reconciling,
) -> None:
    actions = reconciling.fake.populate(60, spacing=timedelta(hours=1))  # 1 h to 60 h ago
    since = datetime.now(UTC) - timedelta(hours=24, minutes=30)
    polled = await command(
        reconciling.env, "poll", "--once", "--since", since.isoformat(), "--page-size", "10"
    )
    assert polled.returncode == 0, polled.stderr
    assert "backfill since" in polled.stderr and "pages" in polled.stderr
    in_range = {a["id"] for a in actions if datetime.fromisoformat(a["created_at"]) >= since}
    assert len(in_range) == 24
    assert set(await reconciling.published()) == in_range
    assert APP_TOKEN not in polled.stdout + polled.stderr


@pytest.mark.spawns
async def test_poll_daemon_stops_cleanly_on_sigterm(reconciling: Reconciling) -> None:
    redis, keys, fake = reconciling.redis, reconciling.keys, reconciling.fake
    fake.populate(10)
    env = reconciling.env | {"FANOUT_POLL_INTERVAL": "0.2"}
    process = await asyncio.create_subprocess_exec(
        FANOUT, "poll", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        for _ in range(100):
            if len(await reconciling.published()) == 10 and fake.calls["list"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert await redis.exists(keys.poll_lease()) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output = (await asyncio.wait_for(process.communicate(), 10))[0].decode()
        except TimeoutError:
            process.kill()
            output = (await process.communicate())[0].decode()
            pytest.fail(f"still running 10 s after SIGTERM:\n{output}")
    assert process.returncode == 0, output
    assert len(await reconciling.published()) == 10
    assert await redis.exists(keys.poll_lease()) == 0, "the lease is released on SIGTERM"
    assert APP_TOKEN not in output


@pytest.mark.spawns
async def test_poll_with_bad_credentials_exits_with_a_clear_line(
    reconciling: Reconciling,
) -> None:
    env = reconciling.env | {"FANOUT_VOUCHERIFY_APP_TOKEN": "nope-secret-123"}
    refused = await command(env, "poll", "--once")
    assert refused.returncode == 1
    assert "401" in refused.stderr and "FANOUT_VOUCHERIFY_APP_TOKEN" in refused.stderr
    assert "nope-secret-123" not in refused.stdout + refused.stderr

    del env["FANOUT_VOUCHERIFY_APP_TOKEN"]
    unset = await command(env, "poll", "--once")
    assert unset.returncode == 2
    assert unset.stderr.startswith(
        "fanout: configuration error: FANOUT_VOUCHERIFY_APP_TOKEN: not set"
    )
    assert reconciling.fake.calls["list"] == 1


async def test_serve_with_poll_runs_the_reconciler_in_the_background(
    settings: Settings,
    redis: Redis,
    keys: Keys,
    fake: FakeVoucherify,
    api_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    actions = fake.populate(30, status_of=mixed)
    for name, value in poll_env("", "", api_url, FANOUT_POLL_INTERVAL="0.2").items():
        if name.startswith("FANOUT_VOUCHERIFY") or name.startswith("FANOUT_POLL"):
            monkeypatch.setenv(name, value)
    background = task.background(argparse.Namespace(poll=True), settings)
    assert len(background) == 1
    async with (
        running_uvicorn(create_app(settings, background=background)) as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
    ):
        for _ in range(100):
            if len(await stream_ids(redis, keys)) == len(completed_ids(actions)):
                break
            await asyncio.sleep(0.05)
        # A webhook for an action the reconciler published is a duplicate.
        answer = await post(client, next(a for a in actions if a["status"] == "DONE"))
        assert answer.status_code == 200 and answer.json()["status"] == "duplicate"
    counts = await stream_ids(redis, keys)
    assert set(counts) == completed_ids(actions) and set(counts.values()) == {1}
    assert await redis.exists(keys.poll_lease()) == 0, "released when the app stops"


def test_serve_poll_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FANOUT_"):
            monkeypatch.delenv(name)
    assert task.background(None, Settings()) == []  # no credentials: off, no error
    assert task.background(False, Settings()) == []  # --no-poll
    with pytest.raises(ConfigError, match=r"^FANOUT_VOUCHERIFY_APP_ID: not set"):
        task.background(True, Settings())  # --poll
    monkeypatch.setenv("FANOUT_POLL", "1")
    with pytest.raises(ConfigError, match=r"^FANOUT_VOUCHERIFY_APP_ID: not set"):
        task.background(None, Settings())
    assert task.background(False, Settings()) == []  # --no-poll wins over FANOUT_POLL


def test_the_reconciler_is_on_by_default_when_the_credentials_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("FANOUT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FANOUT_VOUCHERIFY_APP_ID", "app-1")
    monkeypatch.setenv("FANOUT_VOUCHERIFY_APP_TOKEN", "token-1")
    assert PollSettings.from_env().active
    assert len(task.background(None, Settings())) == 1
    assert task.background(False, Settings()) == []  # --no-poll
    monkeypatch.setenv("FANOUT_POLL", "0")
    assert not PollSettings.from_env().active
    assert task.background(None, Settings()) == []


def test_poll_settings_from_env() -> None:
    poll = PollSettings.from_env(
        {
            "FANOUT_VOUCHERIFY_API_URL": "https://us1.api.voucherify.io/",
            "FANOUT_VOUCHERIFY_APP_ID": "id",
            "FANOUT_VOUCHERIFY_APP_TOKEN": "tok-abc",
            "FANOUT_POLL_INTERVAL": "15",
            "FANOUT_POLL_RATE": "2.5",
        }
    )
    assert poll.api_url == "https://us1.api.voucherify.io"
    assert (poll.interval, poll.rate, poll.page_size) == (15.0, 2.5, 100)
    assert "tok-abc" not in repr(poll) and poll.configured
    assert PollSettings.from_env({}).api_url == "https://api.voucherify.io"
    for variable, value in (
        ("FANOUT_VOUCHERIFY_API_URL", "api.voucherify.io"),
        ("FANOUT_POLL_PAGE_SIZE", "101"),
        ("FANOUT_POLL_RATE", "0"),
        ("FANOUT_POLL", "maybe"),
    ):
        with pytest.raises(ConfigError, match=f"^{variable}: "):
            PollSettings.from_env({variable: value})


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("3", 9.0) == 3.0
    later = datetime.now(UTC) + timedelta(seconds=20)
    assert 18 <= retry_after(email.utils.format_datetime(later, usegmt=True), 9.0) <= 20
    assert retry_after("soon", 9.0) == 9.0 and retry_after(None, 9.0) == 9.0
