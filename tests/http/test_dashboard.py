"""The dashboard in real headless Chromium, driven by Playwright, against a real uvicorn."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from service.config import Secret, Settings
from service.domain import samples
from service.streams.keys import Keys
from tests.support.http import post, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOKEN = "dashboard-token-0123456789"

if CHROMIUM is None and os.environ.get("FANOUT_REQUIRE_BROWSER") == "1":
    raise RuntimeError("FANOUT_REQUIRE_BROWSER=1 but no chromium on PATH")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); CI installs it"
)


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    return dataclasses.replace(settings, admin_token=Secret(TOKEN))


async def test_refused_without_the_token_and_loaded_with_it(
    guarded: Settings, browser: object
) -> None:
    async with serving(guarded) as http:
        base = str(http.base_url).rstrip("/")
        refused = await http.get("/dashboard")
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        assert (await http.get("/dashboard/snapshot")).status_code == 401
        assert (await http.get("/dashboard/events")).status_code == 401
        wrong = await http.get("/dashboard/snapshot", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401

        page = await browser.new_page()  # type: ignore[attr-defined]
        response = await page.goto(f"{base}/dashboard")
        assert response.status == 401
        await page.goto(f"{base}/dashboard?token={TOKEN}")
        assert page.url == f"{base}/dashboard", "the token leaves the address bar"
        await page.wait_for_selector("body[data-ready='1']", timeout=5000)
        assert await page.inner_text("h1") == "voucherify-fanout"
        await page.wait_for_selector("#connection.live", timeout=5000)
        await page.close()


async def test_without_a_token_only_localhost_may_look(settings: Settings) -> None:
    async with serving(settings) as http:
        assert (await http.get("/dashboard")).status_code == 200
        assert (await http.get("/dashboard/snapshot")).status_code == 200
        spoofed = await http.get("/dashboard", headers={"x-forwarded-for": "203.0.113.9"})
        assert spoofed.status_code == 200  # the peer is what counts, not a header


async def test_live_view_changes_within_two_seconds(
    guarded: Settings, browser: object, redis: Redis, keys: Keys
) -> None:
    async with serving(guarded) as http:
        base = str(http.base_url).rstrip("/")
        page = await browser.new_page(viewport={"width": 1280, "height": 1400})  # type: ignore[attr-defined]
        await page.goto(f"{base}/dashboard?token={TOKEN}")
        await page.wait_for_selector("#connection.live", timeout=5000)

        running = samples.sample("PRODUCTS.IMPORT_CSV", status="IN_PROGRESS", progress=40)
        assert (await post(http, running)).status_code == 202
        await page.wait_for_selector(f"#in-flight tr[data-id='{running['id']}']", timeout=2000)
        assert "40%" in await page.inner_text(f"#in-flight tr[data-id='{running['id']}']")

        failed = samples.sample(
            "PRODUCTS.IMPORT_CSV",
            status="FAILED",
            id_=running["id"],
            request_id=running["request_id"],
        )
        assert (await post(http, failed)).status_code == 202
        row = f"#failed tr[data-id='{failed['id']}']"
        await page.wait_for_selector(row, timeout=2000)
        text = await page.inner_text(row)
        assert "FAILED" in text and "row 2" in text and "src_0042" in text
        assert "Duplicate resource key" in text
        await page.wait_for_selector(
            f"#in-flight tr[data-id='{running['id']}']", state="detached", timeout=2000
        )
        await page.wait_for_function(
            "Number(document.querySelector('#rate-total').textContent) > 0", timeout=3000
        )
        # A fuller picture for the screenshot: a reader group, work in flight, a dead letter.
        await redis.xgroup_create(keys.completed("PRODUCTS.IMPORT_CSV"), "crm-sync", id="0")
        for n in range(3):
            await post(
                http, samples.sample("VOUCHERS.IMPORT", status="IN_PROGRESS", progress=30 * n)
            )
            await post(http, samples.sample("CUSTOMERS.BULK_UPDATE"))
        await post(http, b'{"id": "aa_x", "type": "LOYALTIES.IMPORT", "status": "DONE"}')
        await page.wait_for_selector("#groups tbody tr", timeout=4000)
        await page.wait_for_selector("#dead tbody tr", timeout=2000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        await page.close()


async def test_replaying_a_dead_letter_from_the_page_removes_it(
    guarded: Settings, browser: object, redis: Redis, keys: Keys
) -> None:
    # A letter an older version filed as unknown_type, for a type this one knows:
    # replaying it publishes the action and removes the letter.
    action = samples.sample("VOUCHERS.IMPORT")
    body = msgspec.json.encode(action)
    sha = hashlib.sha256(body).hexdigest()
    fixable = await redis.xadd(
        keys.dead_letters(),
        {
            "reason": "unknown_type",
            "detail": "old version",
            "body": body,
            "sha256": sha,
            "received_at": "2026-11-01T00:00:00.000Z",
        },
    )
    await redis.set(keys.dead_seen(sha), fixable)
    async with serving(guarded) as http:
        broken = await post(http, b"{not json")  # stays broken on replay
        assert broken.status_code == 400
        base = str(http.base_url).rstrip("/")
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{base}/dashboard?token={TOKEN}")
        await page.wait_for_selector("body[data-ready='1']", timeout=5000)
        fixable_id = fixable.decode()
        row = f"#dead tr[data-entry='{fixable_id}']"
        assert await page.locator("#dead tbody tr").count() == 2

        await page.click(f"{row} button")
        await page.wait_for_selector(row, state="detached", timeout=3000)
        assert await page.locator("#dead tbody tr").count() == 1
        await page.close()

    [(_, entry)] = await redis.xrange(keys.completed("VOUCHERS.IMPORT"))
    assert entry[b"id"].decode() == action["id"]
    letters = await redis.xrange(keys.dead_letters())
    assert [fields[b"reason"] for _, fields in letters] == [b"malformed_json"]


async def test_replay_endpoint_keeps_a_letter_that_fails_again(
    guarded: Settings, redis: Redis, keys: Keys
) -> None:
    async with serving(guarded) as http:
        await post(http, b'{"id": "aa_1", "type": "NOT.A_TYPE", "status": "DONE"}')
        [(entry_id, _)] = await redis.xrange(keys.dead_letters())
        answer = await http.post(
            f"/dashboard/dead-letters/{entry_id.decode()}/replay",
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    assert answer.status_code == 422
    assert answer.json()["replayed"] is False
    assert answer.json()["outcome"] == "dead"
    assert answer.json()["reason"] == "unknown_type"
    assert await redis.xlen(keys.dead_letters()) == 1


def test_static_assets_are_packaged() -> None:
    static = Path(__file__).resolve().parents[2] / "service" / "http" / "static"
    for name in (
        "dashboard.html",
        "dashboard.js",
        "dashboard.css",
        "vendor/uplot/uPlot.iife.min.js",
    ):
        assert (static / name).is_file(), name
    assert httpx  # the HTTP client the other tests use
