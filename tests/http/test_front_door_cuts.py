"""The front door's cuts, under a real uvicorn in this process with the protocol
``fanout serve`` runs: heads that stop halfway or are too large, idle kept-alive
connections, the connection cap. No server process of its own (the cases that need
``fanout serve``'s file limit, uvloop or workers are in test_front_door.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import msgspec
import pytest

from service.cli.factory import build
from service.config import ConfigError, Secret, Settings
from service.http import front_door
from tests.support.browser import requires_chromium
from tests.support.servers import running_uvicorn
from tests.support.wire import cut_off, exchange, front_door_counts


def short(settings: Settings, **limits: float) -> Settings:
    return dataclasses.replace(settings, **limits)  # type: ignore[arg-type]


async def test_a_head_that_stops_halfway_is_408_and_a_silent_connection_is_closed(
    settings: Settings,
) -> None:
    # The server's sweep cuts them off: bounded here by an assertion, not by the test's
    # timeout (a missing sweep fails as "did not close the connection", issue 31).
    own = short(settings, head_timeout=0.5)
    async with running_uvicorn(build(own), own) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        before = await front_door_counts(base_url)
        half = await cut_off(
            port, b"POST /webhooks/voucherify HTTP/1.1\r\nhost: x\r\ncont", within=5
        )
        silent = await cut_off(port, b"", within=5)
        whole = await exchange(
            port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        counted = await front_door_counts(base_url)
    assert half[0] == 408 and half[1] > 0.4
    assert msgspec.json.decode(half[2].partition(b"\r\n\r\n")[2]) == {"error": "request_timeout"}
    assert b"connection: close" in half[2].partition(b"\r\n\r\n")[0]
    assert silent[0] == 0 and silent[2] == b"" and silent[1] > 0.4
    assert whole[0] == 200
    assert counted["head_timeout"] - before["head_timeout"] == 2


async def test_a_head_over_the_limit_in_a_single_read_is_431_not_the_app(
    settings: Settings,
) -> None:
    # 40 KB in one write on loopback arrives in one read: the limit is found only once
    # the parser has the whole head (on_headers_complete), not while it arrives.
    async with running_uvicorn(build(settings), settings) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        before = await front_door_counts(base_url)
        padding = b"a" * (settings.max_head_bytes + 8000)
        start = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: "
        status, _, answer = await cut_off(port, start + padding + b"\r\n\r\n", within=5)
        fits, _, _ = await exchange(port, start + b"a" * 30_000 + b"\r\n\r\n")
        counted = await front_door_counts(base_url)
    assert status == 431, answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert msgspec.json.decode(body) == {"error": "request_head_too_large"}
    assert b"connection: close" in head
    assert fits == 200  # a head just under the limit reaches the app
    assert counted["head_too_large"] - before["head_too_large"] == 1


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


@pytest.mark.spawns
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
        # Since start is this process's count (the last column): other tests' cuts count.
        since_start = int(await page.inner_text(f"{row} td:last-child"))
        assert await page.inner_text(f"{row} td:nth-child(3)") == "0"
        big = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 40_000 + b"\r\n\r\n"
        status, _, _ = await exchange(port, big)
        assert status == 431
        # The next stats event (every 2 s) carries it: since start +1, and in the last minute.
        await page.wait_for_function(
            f"document.querySelector(\"{row} td:last-child\").textContent === '{since_start + 1}'",
            timeout=5000,
        )
        cells = await page.eval_on_selector_all(f"{row} td", "tds => tds.map(t => t.textContent)")
        limits = await page.inner_text("#front-door-limits")
        await page.close()
    assert cells == ["head too large", "431", "1", str(since_start + 1)]
    assert "heads up to 32768 bytes within 10 s" in limits
