"""What the dashboard shows on arrival: rates from history, refusals, status, letters."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from service.config import Secret, Settings
from service.domain import samples, webhook_samples
from service.streams import refusals
from service.streams.keys import Keys
from tests.support.browser import requires_chromium
from tests.support.http import SECRET, post, serving
from tests.support.servers import ValkeyProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOKEN = "dashboard-token-0123456789"
BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[str]:
    """A Valkey of this test's own, so the page can show the default prefix alone."""
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def _refuse(http: httpx.AsyncClient) -> None:
    """One of each refusal a sender can meet, some of them several times; then two signed
    bodies that are kept as dead letters (answered 200: not refusals)."""
    body = samples.sample("ORDERS.IMPORT")
    for _ in range(3):
        assert (await post(http, body, secret="an old secret")).status_code == 401
    assert (await post(http, b"x" * 2_000_000)).status_code == 413
    assert (await post(http, body, **{"content-type": "text/plain"})).status_code == 415
    invalid = b'{"id": "aa_new", "type": "ORDERS.IMPORT", "status": "LATE"}'
    assert (await post(http, invalid)).json()["status"] == "dead_lettered"
    assert (await post(http, b"{not json")).json()["status"] == "dead_lettered"


@pytest.mark.spawns
@requires_chromium
async def test_the_page_opens_with_history_refusals_status_and_letters(
    own_redis: str, browser: object
) -> None:
    settings = Settings(
        redis_url=own_redis,
        secrets=(Secret(SECRET),),
        stream_prefix="voucherify",
        admin_token=Secret(TOKEN),
    )
    async with serving(settings) as http:
        # Traffic before the page opens: it must be there on arrival.
        for type_ in ("VOUCHERS.IMPORT", "CUSTOMERS.IMPORT_CSV", "ORDERS.IMPORT"):
            for _ in range(4):
                assert (await post(http, samples.sample(type_))).status_code == 202
        assert (await post(http, samples.sample("PRODUCTS.IMPORT_CSV", status="FAILED"))).is_success
        started = (datetime.now(UTC) - timedelta(minutes=4, seconds=12)).isoformat()
        running = samples.sample("VOUCHERS.IMPORT", status="IN_PROGRESS", progress=60)
        running["created_at"] = started
        assert (await post(http, running)).status_code == 202
        for type_ in ("voucher.published", "redemption.succeeded"):
            assert (await post(http, webhook_samples.envelope(type_))).status_code == 202
        await _refuse(http)
        client = Redis.from_url(own_redis)
        try:
            await client.xgroup_create(
                Keys("voucherify").completed("VOUCHERS.IMPORT"), "billing", id="0"
            )
            for empty in ("SKUS.IMPORT_CSV", "ORDERS.METADATA_KEY_PURGE"):
                stream = Keys("voucherify").completed(empty)
                await client.xgroup_create(stream, "billing", id="0", mkstream=True)
        finally:
            await client.aclose()
        await asyncio.sleep(refusals.FLUSH_EVERY + 0.5)  # the counts reach Redis

        base = str(http.base_url).rstrip("/")
        page = await browser.new_page(viewport={"width": 1280, "height": 1500})  # type: ignore[attr-defined]
        # A clean console: no error, no request answered 4xx/5xx (a favicon 404 was one).
        troubles: list[str] = []
        page.on(
            "console", lambda m: troubles.append(m.text) if m.type in ("error", "warning") else None
        )
        page.on("pageerror", lambda exc: troubles.append(str(exc)))
        page.on("response", lambda r: troubles.append(r.url) if r.status >= 400 else None)
        page.on("requestfailed", lambda r: troubles.append(r.url))
        await page.goto(f"{base}/dashboard?token={TOKEN}")
        await page.wait_for_selector("body[data-ready='1']", timeout=5000)

        rates = await page.inner_text("#rates tbody")
        assert "VOUCHERS.IMPORT" in rates and "voucher.published" in rates, "from history"
        refused = {
            reason: await page.inner_text(f"#refusals tr[data-reason='{reason}']")
            for reason in ("invalid_signature", "too_large", "unsupported_media_type")
        }
        assert refused["invalid_signature"].split() == ["401", "invalid_signature", "3", "3"]
        assert refused["too_large"].split()[:2] == ["413", "too_large"]
        assert "415" in refused["unsupported_media_type"]
        assert await page.inner_text("#refused-total") == "5"
        # The latest refusals, each with its detail and the names of its headers.
        latest = page.locator("#refused-latest tr[data-reason='invalid_signature']")
        assert await latest.count() == 3
        text = await latest.first.inner_text()
        assert "signature does not match the body for any configured secret" in text
        assert "x-voucherify-signature" in text and "content-type" in text
        assert SECRET not in await page.inner_text("#refused-latest")
        # Legends name what each chart draws.
        assert "VOUCHERS.IMPORT" in await page.inner_text("#rate-chart .u-legend")
        assert "invalid_signature" in await page.inner_text("#refusal-chart .u-legend")
        assert "FAILED" in await page.inner_text("#hour-chart .u-legend")
        # Consumer groups: the group's totals, its streams that hold something.
        total = await page.inner_text("#groups tr.group-total[data-group='billing']")
        assert total.split()[:4] == ["billing", "(3", "streams)", "4"]
        assert await page.locator("#groups tr[data-stream]").count() == 1
        assert "2 empty streams hidden" in await page.inner_text("#groups")
        await page.check("#groups-all")
        assert await page.locator("#groups tr[data-stream]").count() == 3
        assert re.match(r"valkey \S+ · [\d.]+ ms · ", await page.inner_text("#redis"))
        assert await page.inner_text("#reconciler") == "reconciler off"
        age = await page.inner_text(f"#in-flight tr[data-id='{running['id']}'] td.age")
        assert re.fullmatch(r"4m 1\d?s|4m 2\ds", age), age

        [letter] = [
            entry
            async for entry in _letters(own_redis)
            if entry[1][b"reason"] == b"invalid_payload"
        ]
        await page.click(f"#dead tr[data-entry='{letter[0]}'] td:nth-child(2)")
        body = page.locator(f"#dead tr[data-letter='{letter[0]}'] pre.body")
        await body.wait_for(timeout=3000)
        assert '"status": "LATE"' in await body.inner_text()

        await page.wait_for_selector("#connection.live", timeout=5000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.uncheck("#groups-all")
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        await page.close()
        assert troubles == [], troubles


async def _letters(url: str) -> AsyncIterator[tuple[str, dict[bytes, bytes]]]:
    client = Redis.from_url(url)
    try:
        for entry_id, fields in await client.xrange(Keys("voucherify").dead_letters()):
            yield entry_id.decode(), fields
    finally:
        await client.aclose()


async def test_refusals_of_two_workers_add_up_in_redis(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    async with serving(settings) as one, serving(settings) as two:
        for http in (one, two):
            assert (
                await post(http, samples.sample("SKUS.IMPORT_CSV"), secret="x")
            ).status_code == 401
        await asyncio.sleep(refusals.FLUSH_EVERY + 0.5)
    seen = await refusals.history(redis, keys)
    assert sum(seen["reasons"]["invalid_signature"]) == 2
    assert seen["status"]["invalid_signature"] == 401


@pytest.mark.spawns
async def test_refusals_counted_while_redis_is_down_arrive_when_it_is_back(
    tmp_path: Path,
) -> None:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    client = Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    keys = Keys("t")
    counts = refusals.Refusals(client, keys, timeout=1)
    try:
        server.stop()
        counts.count("unavailable")
        counts.count("unavailable")
        await counts.flush()  # fails: kept
        server.start()
        await counts.flush()
        seen = await refusals.history(client, keys)
    finally:
        await client.aclose()
        server.stop()
    assert sum(seen["reasons"]["unavailable"]) == 2


async def test_a_dead_letter_opens_with_its_body(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    guarded = dataclasses.replace(settings, admin_token=Secret(TOKEN))
    async with serving(guarded) as http:
        kept = await post(http, b'{"id": "aa_1", "type": "ORDERS.IMPORT", "status": "LATE"}')
        assert kept.json()["status"] == "dead_lettered"
        [(entry_id, _)] = await redis.xrange(keys.dead_letters())
        letter = await http.get(f"/dashboard/dead-letters/{entry_id.decode()}", headers=BEARER)
        missing = await http.get("/dashboard/dead-letters/1-0", headers=BEARER)
        junk = await http.get("/dashboard/dead-letters/nope", headers=BEARER)
        anonymous = await http.get(f"/dashboard/dead-letters/{entry_id.decode()}")
    assert letter.status_code == 200
    shown = letter.json()
    assert shown["reason"] == "invalid_payload" and shown["body_json"] is True
    assert shown["body"] == '{\n  "id": "aa_1",\n  "type": "ORDERS.IMPORT",\n  "status": "LATE"\n}'
    assert (missing.status_code, junk.status_code) == (404, 404)
    assert missing.json()["error"] == "not_found"
    assert anonymous.status_code == 401
