"""The dashboard in real headless Chromium, driven by Playwright, against a real uvicorn."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from service.config import Secret, Settings
from service.domain import samples
from service.domain.webhook_samples import envelope
from service.streams.keys import Keys
from tests.support.browser import requires_chromium
from tests.support.feed import fixable_letter
from tests.support.http import post, serving
from tests.support.servers import running_uvicorn

TOKEN = "dashboard-token-0123456789"

pytestmark = requires_chromium


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    return dataclasses.replace(settings, admin_token=Secret(TOKEN))


@pytest.mark.spawns
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


@pytest.mark.spawns
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
        # A reader group, work in flight, a dead letter: each appears live.
        await redis.xgroup_create(keys.completed("PRODUCTS.IMPORT_CSV"), "crm-sync", id="0")
        for n in range(3):
            await post(
                http, samples.sample("VOUCHERS.IMPORT", status="IN_PROGRESS", progress=30 * n)
            )
            await post(http, samples.sample("CUSTOMERS.BULK_UPDATE"))
        await post(http, envelope("voucher.published"))
        await post(http, envelope("customer.order.paid", {"order": []}))
        await post(http, b'{"id": "aa_x", "type": "ORDERS.IMPORT", "status": "LATE"}')
        await page.wait_for_selector("#groups tbody tr", timeout=4000)
        await page.wait_for_selector("#dead tbody tr", timeout=2000)
        await page.close()


@pytest.mark.spawns
async def test_webhook_events_show_with_drift_standing_out(
    guarded: Settings, browser: object
) -> None:
    async with serving(guarded) as http:
        earlier = envelope("voucher.published")
        assert (await post(http, earlier)).status_code == 202  # in the snapshot
        base = str(http.base_url).rstrip("/")
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{base}/dashboard?token={TOKEN}")
        await page.wait_for_selector("#connection.live", timeout=5000)
        first = f"#webhook-events tr[data-id='{earlier['event']['id']}']"
        assert "valid" in await page.inner_text(first)

        drift = envelope("customer.order.paid", {"order": ["not", "an", "object"]})
        assert (await post(http, drift)).status_code == 202  # live, through the feed
        row = f"#webhook-events tr[data-id='{drift['event']['id']}']"
        await page.wait_for_selector(row, timeout=2000)
        text = await page.inner_text(row)
        assert "customer.order.paid" in text and "distribution" in text
        assert "drift: Expected `object | null`, got `array` - at `$.data.order`" in text
        assert await page.get_attribute(row, "class") == "drift"
        await page.close()


@pytest.mark.spawns
async def test_replaying_a_dead_letter_from_the_page_removes_it(
    guarded: Settings, browser: object, redis: Redis, keys: Keys
) -> None:
    fixable_id, action = await fixable_letter(redis, keys)
    async with serving(guarded) as http:
        broken = await post(http, b"{not json")  # stays broken on replay
        assert broken.json()["status"] == "dead_lettered"
        base = str(http.base_url).rstrip("/")
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{base}/dashboard?token={TOKEN}")
        await page.wait_for_selector("body[data-ready='1']", timeout=5000)
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


@pytest.mark.spawns
async def test_a_form_on_another_local_port_cannot_replay_even_with_the_cookie(
    guarded: Settings, browser: object, redis: Redis, keys: Keys
) -> None:
    # Another local web app (any dev server on 127.0.0.1) is the same *site* as the
    # dashboard: cookies ignore ports, so the SameSite=Strict cookie goes along with
    # its form post. Only the origin check stands between it and the replay.
    fixable_id, _ = await fixable_letter(redis, keys)
    async with serving(guarded) as http:
        base = str(http.base_url).rstrip("/")
        target = f"{base}/dashboard/dead-letters/{fixable_id}/replay"

        async def hostile_page(request: Request) -> HTMLResponse:
            return HTMLResponse(
                f'<form method="post" action="{target}"></form>'
                "<script>document.forms[0].submit()</script>"
            )

        async with running_uvicorn(Starlette(routes=[Route("/", hostile_page)])) as other:
            page = await browser.new_page()  # type: ignore[attr-defined]
            await page.goto(f"{base}/dashboard?token={TOKEN}")
            await page.wait_for_selector("body[data-ready='1']", timeout=5000)
            async with page.expect_response(target) as answered:
                await page.goto(f"{other}/")
            answer = await answered.value
            sent = await answer.request.all_headers()
            await page.close()
    assert "fanout_admin=" in sent.get("cookie", ""), "the browser did send the cookie"
    assert sent["origin"] == other
    assert answer.status == 403
    assert await redis.xlen(keys.dead_letters()) == 1
    assert await redis.xlen(keys.completed("VOUCHERS.IMPORT")) == 0


async def test_replay_endpoint_keeps_a_letter_that_fails_again(
    guarded: Settings, redis: Redis, keys: Keys
) -> None:
    async with serving(guarded) as http:
        await post(http, b'{"id": "aa_1", "type": "VOUCHERS.IMPORT", "status": "LATE"}')
        [(entry_id, _)] = await redis.xrange(keys.dead_letters())
        answer = await http.post(
            f"/dashboard/dead-letters/{entry_id.decode()}/replay",
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    assert answer.status_code == 422
    assert answer.json()["replayed"] is False
    assert answer.json()["outcome"] == "dead"
    assert answer.json()["reason"] == "invalid_payload"
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
