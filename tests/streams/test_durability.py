"""Durable by default (issue 13): a 2xx survives kill -9 of Redis, slow disk included,
wherever the server can confirm it; elsewhere start-up says what is at risk."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.config import Durability, Settings
from service.domain import samples
from service.streams.publisher import Publisher
from tests.support.cli import embedded_url
from tests.support.http import SECRET, post, serving
from tests.support.loss import LossReport, measure
from tests.support.servers import FanoutProcess, ValkeyProcess, free_port, has_binary
from tests.support.slowdisk import requires_strace

pytestmark = pytest.mark.spawns

needs_redis = pytest.mark.skipif(not has_binary("redis"), reason="no redis-server on PATH")
FANOUT = str(Path(sys.executable).parent / "fanout")


async def waitaof_calls(url: str) -> int:
    client = Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_waitaof", {}).get("calls", 0))


async def promise_of(settings: Settings, url: str) -> tuple[str, bool, Durability]:
    client = Redis.from_url(url)
    try:
        publisher = Publisher.from_settings(client, dataclasses.replace(settings, redis_url=url))
        promise = await publisher.check_durability()
    finally:
        await client.aclose()
    return promise.line, promise.at_risk, promise.durability


async def test_the_default_waits_for_the_aof_where_the_server_can(
    settings: Settings, tmp_path: Path
) -> None:
    server = ValkeyProcess(tmp_path / "v", appendonly=True, appendfsync="everysec")
    server.start()
    try:
        line, at_risk, durability = await promise_of(settings, server.url)
        assert durability == Durability("aof")
        # Issue 21: under everysec WAITAOF answers before the fsync (LazyFS: 335 of 5,688
        # acknowledged lost to host crashes); the line no longer promises what it cannot.
        assert at_risk
        assert line.startswith("durability auto -> aof: a 2xx waits until Redis has the")
        assert "it survives a kill -9 of Redis, NOT a crash of its host" in line
        assert "set appendfsync always for both" in line
        before = await waitaof_calls(server.url)
        async with serving(dataclasses.replace(settings, redis_url=server.url)) as http:
            for _ in range(3):
                assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
        assert await waitaof_calls(server.url) - before >= 3
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("binary", "appendonly", "appendfsync", "says"),
    [
        pytest.param(
            "redis",
            True,
            "everysec",
            "this Redis has no WAITAOF (Redis < 7.2)",
            marks=needs_redis,
        ),
        ("valkey", False, "everysec", "Redis runs with appendonly no"),
        # WAITAOF never confirms there: every delivery would wait out its timeout, a 503.
        ("valkey", True, "no", "Redis runs with appendfsync no"),
    ],
    ids=["redis-7.0", "aof-off", "appendfsync-no"],
)
async def test_where_the_server_cannot_the_default_says_what_is_at_risk(
    settings: Settings,
    tmp_path: Path,
    binary: str,
    appendonly: bool,
    appendfsync: str,
    says: str,
) -> None:
    server = ValkeyProcess(
        tmp_path / "s", binary=binary, appendonly=appendonly, appendfsync=appendfsync
    )
    server.start()
    try:
        line, at_risk, durability = await promise_of(settings, server.url)
        assert at_risk
        assert durability == Durability("none")
        assert line.startswith(f"durability auto -> none: {says}")
        assert "appendfsync always" in line and "FANOUT_DURABILITY=none" in line
        assert "\n" not in line
        async with serving(dataclasses.replace(settings, redis_url=server.url)) as http:
            assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
    finally:
        server.stop()


@needs_redis
async def test_a_server_that_answers_only_later_decides_then(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis down at start-up: assumed able. It comes back as Redis 7.0 (no WAITAOF):
    # the first batch switches to answering without the wait, said once.
    server = ValkeyProcess(tmp_path / "r", binary="redis", appendonly=True)
    own = dataclasses.replace(settings, redis_url=server.url, redis_timeout=1.0)
    with caplog.at_level(logging.INFO):
        async with serving(own) as http:
            assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 503
            server.start()
            try:
                answers = [
                    (await post(http, samples.sample("ORDERS.IMPORT"))).status_code
                    for _ in range(5)
                ]
            finally:
                server.stop()
    assert answers[-4:] == [202] * 4
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("durability")]
    assert lines[0].startswith("durability auto: Redis does not answer yet")
    assert sum("no WAITAOF" in line for line in lines) == 1


@pytest.mark.parametrize(
    ("appendonly", "appendfsync", "says"),
    [
        (False, "everysec", "FANOUT_DURABILITY=aof: the Redis server refused WAITAOF"),
        (True, "no", "FANOUT_DURABILITY=aof: the Redis server runs with appendfsync no"),
    ],
    ids=["aof-off", "appendfsync-no"],
)
def test_explicit_aof_is_still_refused_where_the_server_cannot(
    tmp_path: Path, appendonly: bool, appendfsync: str, says: str
) -> None:
    # Unchanged: `aof` is a demand, not a wish.
    server = ValkeyProcess(tmp_path / "v", appendonly=appendonly, appendfsync=appendfsync)
    server.start()
    try:
        result = subprocess.run(
            [FANOUT, "serve", "--port", str(free_port()), "--durability", "aof"],
            env=_env(FANOUT_REDIS_URL=server.url, FANOUT_SECRETS="s"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        server.stop()
    assert result.returncode == 1
    assert says in result.stderr


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")} | extra


async def test_fanout_serve_prints_the_promise_and_the_embedded_server_fsyncs_always(
    tmp_path: Path,
) -> None:
    log = tmp_path / "serve.log"
    data = tmp_path / "data"
    receiver = FanoutProcess(log, "--data-dir", str(data), env={"FANOUT_SECRETS": SECRET})
    receiver.start()
    try:
        client = Redis.from_url(embedded_url(data))
        try:
            assert (await client.config_get("appendfsync"))["appendfsync"] == "always"
        finally:
            await client.aclose()
    finally:
        receiver.stop()
    printed = [line for line in log.read_text().splitlines() if "durability" in line]
    assert printed[0].startswith("durability auto -> aof: a 2xx waits until Redis has")
    assert "survives a kill -9 of Redis and a crash of its host" in printed[0]
    assert "everysec" not in printed[0]
    memory = [line for line in log.read_text().splitlines() if line.startswith("memory:")]
    assert memory == [
        "memory: maxmemory-policy noeviction (no maxmemory: the server grows until its host "
        "runs out): a full server is a 503"
    ]
    assert not any(line.startswith("warning:") for line in printed)


@needs_redis
def test_fanout_serve_on_redis_7_0_warns_in_one_line(tmp_path: Path) -> None:
    server = ValkeyProcess(tmp_path / "r", binary="redis", appendonly=True)
    server.start()
    log = tmp_path / "serve.log"
    receiver = FanoutProcess(log, env={"FANOUT_SECRETS": SECRET, "FANOUT_REDIS_URL": server.url})
    try:
        receiver.start()
    finally:
        receiver.stop()
        server.stop()
    warnings = [line for line in log.read_text().splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: durability auto -> none: this Redis has no WAITAOF (Redis < 7.2), so a 2xx "
        "is sent before the delivery is on disk and a kill -9 of Redis can lose acknowledged "
        "deliveries; use Redis >= 7.2 or Valkey with appendonly yes and appendfsync always "
        "(or set FANOUT_DURABILITY=none to accept this)"
    ]


# --- the headline: slow disk, kill -9 under load --------------------------------------


async def _kill_run(
    root: Path, durability: str | None, *, count: int, after: int, seconds: float
) -> LossReport:
    return await measure(
        root,
        durability=durability,
        deliveries=count,
        kill_after=after,
        seconds=seconds,
        when_buffered=3.0,
    )


@pytest.mark.slow
@requires_strace
@pytest.mark.timeout(120)
async def test_slow_disk_kill_loses_nothing_acknowledged_with_the_defaults(
    tmp_path: Path,
) -> None:
    # Valkey with appendonly yes, appendfsync everysec (the server's defaults), every
    # fsync 2.5 s late, SIGKILL under load at a moment the server holds unwritten AOF.
    default = await _kill_run(tmp_path / "auto", None, count=3000, after=2000, seconds=6)
    # The control: the old default, killed while the server holds AOF data it has not
    # written. On a loaded machine that data may not hold any entry (the refusal counts of
    # the 503s of a stalled moment, say: seen in full CI runs, buffered and nothing lost),
    # and a kill that destroys no entry tests nothing: such a run is made again (at most
    # three in all).
    for attempt in range(3):
        old = await _kill_run(
            tmp_path / f"none{attempt}", "none", count=6000, after=4000, seconds=6
        )
        if old.destroyed:
            break
    print(f"\ndefault (auto): {default.line()}\nnone:           {old.line()}")
    assert default.acknowledged > 0
    assert default.lost == 0, default.lost_ids[:5]
    assert old.destroyed, "no kill destroyed an entry the server held, in three runs"
    assert old.lost > 0, "the fault is real: the old default loses acknowledged deliveries"


def test_the_loss_harness_runs_as_a_script(tmp_path: Path) -> None:
    # python -m tests.support.loss prints the figures of RELIABILITY.md; a tiny run.
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.loss", "--deliveries", "200", "--delay", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert "lost after restart: 0" in result.stdout
