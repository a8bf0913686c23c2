"""The front door with no proxy in front: slow or huge requests, too many connections.

Real sockets against a real ``fanout serve`` (uvloop, as deployed) or a real
uvicorn with the same protocol in this process, with short limits set by flags
where the defaults would make a test slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from service.cli.factory import build
from service.config import ConfigError, Secret, Settings
from service.domain import samples
from service.http import front_door
from service.http.app import WEBHOOK_PATH
from service.streams.keys import Keys
from tests.support.browser import requires_chromium
from tests.support.http import SECRET, signed
from tests.support.servers import FanoutProcess, peak_rss, running_uvicorn

ROOT = Path(__file__).parents[2]


def webhook(body: bytes, headers: dict[str, str], *, close: bool = True) -> bytes:
    lines = [
        f"POST {WEBHOOK_PATH} HTTP/1.1",
        "host: 127.0.0.1",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
        *(["connection: close"] if close else []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def exchange(port: int, request: bytes) -> tuple[int, float, bytes]:
    """Send ``request`` on a new connection, read until the server closes it."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                answer += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return status_of(answer), time.monotonic() - started, answer


async def deliver(port: int) -> tuple[int, float]:
    """One signed delivery on a new connection, as Voucherify sends it."""
    body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))
    try:
        status, seconds, _ = await exchange(port, webhook(body, signed(body)))
    except OSError:
        return 0, 0.0
    return status, seconds


def fanout_serve(
    tmp_path: Path, redis_url: str, prefix: str, *flags: str, files: int | None = None
) -> FanoutProcess:
    return FanoutProcess(
        tmp_path / "fanout.log",
        f"--redis-url={redis_url}",
        f"--secrets={SECRET}",
        f"--stream-prefix={prefix}",
        *flags,
        files=files,
    )


def front_door_counts(base_url: str) -> dict[str, float]:
    text = httpx.get(f"{base_url}/metrics").text
    counts = {}
    for line in text.splitlines():
        if line.startswith("fanout_front_door_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_1500_half_heads_under_a_1024_file_limit_do_not_stop_real_deliveries(
    redis_url: str, prefix: str, tmp_path: Path, redis: Redis, keys: Keys
) -> None:
    # The server alone gets 1,024 files; the slowloris runs in a process of its own
    # (raising its own soft limit), so neither the test's limit nor its loop matter.
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2000:
        pytest.skip("the slowloris needs a hard file limit of 2,000 or more (ulimit -Hn)")
    fanout = fanout_serve(tmp_path, redis_url, prefix, "--head-timeout=5", files=1024)
    fanout.start()
    assert fanout.process is not None
    attack = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.support.slowloris", str(fanout.port), "1500", "8"],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    results: list[tuple[int, float]] = []
    try:
        await asyncio.sleep(0.5)  # the 1,500 are on their way
        senders = []
        stop = time.monotonic() + 6
        while time.monotonic() < stop:  # a delivery every 20 ms, each on a new connection
            senders.append(asyncio.create_task(deliver(fanout.port)))
            await asyncio.sleep(0.02)
        results = await asyncio.gather(*senders)
        out, _ = await attack.communicate()
        counts = front_door_counts(fanout.base_url)
        rss = peak_rss(fanout.process.pid)
    finally:
        if attack.returncode is None:
            attack.kill()
            await attack.wait()
        await asyncio.to_thread(fanout.stop)
    report = json.loads(out)
    lifetimes = report["lifetimes"]
    held = len(lifetimes) + report["still_open"]
    closed = sum(1 for seconds in lifetimes if seconds <= 20)
    statuses = Counter(status for status, _ in results)
    latencies = [seconds for _, seconds in results]
    print(
        f"\n1,500 half heads, server file limit 1,024: {closed}/{held} closed by the server "
        f"within 20 s (median {statistics.median(lifetimes):.2f} s, max {max(lifetimes):.2f} s), "
        f"{report['failed']} connects failed; {len(results)} deliveries every 20 ms: "
        f"{dict(statuses)}, p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {p99(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"front door {counts}; server peak RSS {rss / 2**20:.0f} MiB"
    )
    # The cap was fitted to the server's own file limit, and said so at start-up.
    assert (
        "front door: at most 416 open connections (file limit 1024)" in fanout.log_path.read_text()
    )
    assert statuses == {202: len(results)}
    assert p99(latencies) < 0.25
    assert held == 1500 and closed >= 0.95 * held
    assert counts["shed"] + counts["head_timeout"] >= 0.95 * held
    assert rss < 400 * 2**20
    assert await redis.xlen(keys.completed("VOUCHERS.IMPORT")) == len(results)


@pytest.mark.slow
async def test_a_32_mb_header_is_431_within_2_s_and_delays_no_one(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    fanout = fanout_serve(tmp_path, redis_url, prefix)
    fanout.start()
    assert fanout.process is not None
    done = asyncio.Event()
    probing: list[asyncio.Task[None]] = []
    try:
        # Voucherify's size: a few KB of headers and a body near the limit are accepted.
        body = msgspec.json.encode({**samples.sample("VOUCHERS.IMPORT"), "pad": "x" * 1_000_000})
        headers = {**signed(body), "x-trace": "t" * 4000, "user-agent": "Voucherify"}
        status, _, _ = await exchange(fanout.port, webhook(body, headers))
        assert status == 202
        before = peak_rss(fanout.process.pid)
        probes: list[float] = []

        async def probe() -> None:
            while not done.is_set():
                status, seconds, _ = await exchange(
                    fanout.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
                )
                assert status == 200
                probes.append(seconds)
                await asyncio.sleep(0.02)

        probing.append(asyncio.create_task(probe()))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", fanout.port)
        writer.write(b"POST /webhooks/voucherify HTTP/1.1\r\nhost: x\r\nx-big: ")
        answer = asyncio.create_task(reader.read(65536))
        sent = 0
        chunk = b"a" * 65536
        with contextlib.suppress(ConnectionError):
            while sent < 32 * 2**20 and not answer.done():
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        try:
            reply = await asyncio.wait_for(answer, 5)
        except ConnectionError:  # reset, or a broken pipe while still sending
            reply = b"(closed)"
        elapsed = time.monotonic() - started
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await asyncio.sleep(0.2)
        done.set()
        await probing[0]
        # 100,000 small headers are one oversized head too.
        many = b"".join(b"x-h%d: v\r\n" % n for n in range(100_000))
        many_status, _, _ = await exchange(
            fanout.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n"
        )
        after = peak_rss(fanout.process.pid)
        counts = front_door_counts(fanout.base_url)
    finally:
        done.set()
        await asyncio.gather(*probing, return_exceptions=True)
        await asyncio.to_thread(fanout.stop)
    print(
        f"\n32 MB header: {reply[:40]!r} after {elapsed:.2f} s, {sent / 2**20:.1f} MiB sent; "
        f"probes during it: max {max(probes) * 1000:.0f} ms over {len(probes)}; "
        f"100,000 headers: {many_status}; peak RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB"
    )
    assert reply.startswith(b"HTTP/1.1 431 ") or reply in (b"", b"(closed)")
    assert elapsed < 2
    assert max(probes) < 0.25
    assert many_status == 431
    assert after - before < 32 * 2**20
    assert counts["head_too_large"] >= 1


@pytest.mark.slow
async def test_a_body_that_never_comes_is_408_after_the_body_timeout(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    fanout = fanout_serve(tmp_path, redis_url, prefix, "--body-timeout=2", "--workers=2")
    fanout.start()
    try:
        body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))
        head = webhook(b"", signed(body)).replace(b"content-length: 0", b"content-length: 1000")
        status, seconds, answer = await exchange(fanout.port, head + b'{"id":')
        counts = front_door_counts(fanout.base_url)
    finally:
        await asyncio.to_thread(fanout.stop)
    print(f"\nbody that never comes (2 workers, --body-timeout=2): {status} after {seconds:.2f} s")
    assert status == 408
    assert msgspec.json.decode(answer.partition(b"\r\n\r\n")[2]) == {"error": "request_timeout"}
    assert 1.9 < seconds < 4
    assert counts["body_timeout"] == 1


def short(settings: Settings, **limits: float) -> Settings:
    return dataclasses.replace(settings, **limits)  # type: ignore[arg-type]


async def test_a_head_that_stops_halfway_is_408_and_a_silent_connection_is_closed(
    settings: Settings,
) -> None:
    own = short(settings, head_timeout=0.5)
    async with running_uvicorn(build(own), own) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        half = await exchange(port, b"POST /webhooks/voucherify HTTP/1.1\r\nhost: x\r\ncont")
        silent = await exchange(port, b"")
        whole = await exchange(
            port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
    assert half[0] == 408 and 0.4 < half[1] < 2
    assert silent[0] == 0 and silent[2] == b"" and 0.4 < silent[1] < 2
    assert whole[0] == 200 and whole[1] < 0.4


async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    settings: Settings,
) -> None:
    own = short(settings, keep_alive_timeout=1, head_timeout=5)
    async with running_uvicorn(build(own), own) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
        try:
            for _ in range(2):  # kept alive between the two
                writer.write(request)
                assert (await reader.readuntil(b'{"status":"ok"}')).startswith(b"HTTP/1.1 200")
            writer.write(request * 2)  # pipelined: both answered, in order
            for _ in range(2):
                assert (await reader.readuntil(b'{"status":"ok"}')).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert await reader.read(100) == b""  # closed by the server
            idle = time.monotonic() - started
        finally:
            writer.close()
    assert 0.9 < idle < 2.5


async def test_at_the_cap_the_idle_connection_goes_and_beyond_busy_ones_503(
    settings: Settings,
) -> None:
    token = "t" * 32
    own = dataclasses.replace(settings, max_connections=2, admin_token=Secret(token))
    stream = (
        b"GET /dashboard/events HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"authorization: Bearer " + token.encode() + b"\r\n\r\n"
    )
    async with running_uvicorn(build(own), own) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        host = {"host": f"127.0.0.1:{port}"}
        stream = stream.replace(b"host: 127.0.0.1", b"host: " + host["host"].encode())
        # One busy connection (an event stream: a request in the app) and one idle.
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
        busy_w.write(stream)
        assert (await busy_r.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)
        # A third: the idle one is closed for it, and it is served.
        health = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        status, _, _ = await exchange(port, health)
        assert status == 200
        assert await asyncio.wait_for(idle_r.read(100), 2) == b""
        idle_w.close()
        # Two busy: nothing to shed, so a third is answered 503 and closed.
        other_r, other_w = await asyncio.open_connection("127.0.0.1", port)
        other_w.write(stream)
        assert (await other_r.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        status, _, answer = await exchange(port, health)
        for writer in (busy_w, other_w):
            writer.close()
    assert status == 503
    assert b"retry-after: 1" in answer
    assert msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])["error"] == "unavailable"


def test_the_defaults_fit_voucherify_and_the_file_limit() -> None:
    defaults = Settings()
    # Voucherify sends a few KB of headers and waits 10 s for the answer.
    assert defaults.max_head_bytes == 32_768
    assert defaults.head_timeout == 10
    assert defaults.body_timeout == 20
    assert defaults.keep_alive_timeout == 5
    assert defaults.max_connections is None
    limits, warning = front_door.limits_for(defaults, 1024)
    assert warning is None
    # The cap, one backlog accepted in a burst and the worker's own files fit 1,024.
    assert limits.max_connections + limits.backlog + front_door.OWN_FILES <= 1024
    assert limits.max_connections >= 256
    assert front_door.limits_for(defaults, 1 << 20)[0].max_connections == 2048
    asked = dataclasses.replace(defaults, max_connections=5000)
    limits, warning = front_door.limits_for(asked, 4096)
    assert limits.max_connections < 4096 and warning and "FANOUT_MAX_CONNECTIONS 5000" in warning
    # A head limit under 1 KiB is a unit mistake: refused at start-up, naming the variable.
    with pytest.raises(ConfigError, match=r"^FANOUT_MAX_HEAD_BYTES: .*at least 1024"):
        Settings.from_env({"FANOUT_MAX_HEAD_BYTES": "32"})


@requires_chromium
async def test_the_dashboard_shows_what_the_front_door_cut_off(
    settings: Settings, browser: object
) -> None:
    token = "front-door-token-0123456789"
    own = dataclasses.replace(settings, admin_token=Secret(token))
    async with running_uvicorn(build(own), own) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{base_url}/dashboard?token={token}")
        await page.wait_for_selector("body[data-ready='1']", timeout=5000)
        row = "#front-door tr[data-reason='head_too_large']"
        assert await page.inner_text(f"{row} td:last-child") == "0"
        big = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 40_000 + b"\r\n\r\n"
        status, _, _ = await exchange(port, big)
        assert status == 431
        # The next stats event (every 2 s) carries it: since start 1, and in the last minute.
        await page.wait_for_function(
            f"document.querySelector(\"{row} td:last-child\").textContent === '1'",
            timeout=5000,
        )
        cells = await page.eval_on_selector_all(f"{row} td", "tds => tds.map(t => t.textContent)")
        limits = await page.inner_text("#front-door-limits")
        await page.close()
    assert cells == ["head too large", "431", "1", "1"]
    assert "heads up to 32768 bytes within 10 s" in limits
