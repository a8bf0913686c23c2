"""``fanout serve`` as a user runs it with no admin variable: the token is in the printed URL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest

from service.domain import samples
from service.http.app import WEBHOOK_PATH
from tests.support.browser import requires_chromium
from tests.support.http import signed
from tests.support.servers import free_port

pytestmark = pytest.mark.spawns

FANOUT = str(Path(sys.executable).parent / "fanout")
PRINTED_URL = re.compile(r"^dashboard: (\S+)$", re.MULTILINE)


@contextlib.asynccontextmanager
async def served(
    folder: Path, port: int, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, str]]:
    """``fanout serve`` on the embedded Valkey in ``folder``; yields its base URL and output."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    log = folder / f"serve-{port}.log"
    with log.open("a") as out:
        process = await asyncio.create_subprocess_exec(
            *(FANOUT, "serve", "--port", str(port), "--log-level", "warning"),
            cwd=folder,
            env=clean | (env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            deadline = time.monotonic() + 20
            while True:
                assert process.returncode is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield base, log.read_text()
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 15)
        log.unlink()


def printed_url(output: str) -> str:
    [url] = PRINTED_URL.findall(output)
    return str(url)


@requires_chromium
async def test_the_printed_url_opens_the_dashboard_and_survives_a_restart(
    tmp_path: Path, browser: object
) -> None:
    port = free_port()
    token_file = tmp_path / ".fanout" / "admin-token"
    async with served(tmp_path, port) as (base, output):
        url = printed_url(output)
        token = token_file.read_text().strip()
        assert url == f"{base}/dashboard?token={token}"
        assert len(token) >= 32
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert "generated an admin token" in output

        async with httpx.AsyncClient(base_url=base) as http:
            # The same URL without the token, and its data, are refused (peer: loopback).
            assert (await http.get("/dashboard")).status_code == 401
            assert (await http.get("/dashboard/snapshot")).status_code == 401
            bearer = {"authorization": f"Bearer {token}"}
            for host, status in ((f"localhost:{port}", 200), (f"evil.example:{port}", 403)):
                answer = await http.get("/dashboard/snapshot", headers={**bearer, "host": host})
                assert answer.status_code == status, host

        page = await browser.new_page()  # type: ignore[attr-defined]
        refused = await page.goto(f"{base}/dashboard")
        assert refused.status == 401
        await page.goto(url)
        assert page.url == f"{base}/dashboard", "the token leaves the address bar"
        await page.wait_for_selector("#connection.live", timeout=5000)
        # The live view shows what arrives.
        running = samples.sample("PRODUCTS.IMPORT_CSV", status="IN_PROGRESS", progress=40)
        body = msgspec.json.encode(running)
        secret = (tmp_path / ".fanout" / "webhook-secret").read_text().strip()
        async with httpx.AsyncClient(base_url=base) as http:
            sent = await http.post(WEBHOOK_PATH, content=body, headers=signed(body, secret))
        assert sent.status_code == 202
        row = f"#in-flight tr[data-id='{running['id']}']"
        await page.wait_for_selector(row, timeout=3000)
        assert "40%" in await page.inner_text(row)

    async with served(tmp_path, port) as (_, output):
        assert "using the admin token kept in" in output
        assert printed_url(output) == url, "the same token after a restart"
        # The browser's cookie from before the restart still opens the page.
        await page.reload()
        await page.wait_for_selector("#connection.live", timeout=5000)
        await page.wait_for_selector(row, timeout=3000)
        await page.close()
    assert token_file.read_text().strip() == token


async def test_with_an_admin_token_set_it_is_the_only_key(tmp_path: Path) -> None:
    token = "operator-chosen-token-0123"
    async with served(tmp_path, free_port(), {"FANOUT_ADMIN_TOKEN": token}) as (base, output):
        assert printed_url(output) == f"{base}/dashboard?token=<FANOUT_ADMIN_TOKEN>"
        assert token not in output, "a configured token is never printed"
        assert not (tmp_path / ".fanout" / "admin-token").exists()
        async with httpx.AsyncClient(base_url=base, follow_redirects=True) as http:
            assert (await http.get("/dashboard")).status_code == 401
            page = await http.get(f"/dashboard?token={token}")  # then the cookie
            assert (page.status_code, str(page.url)) == (200, f"{base}/dashboard")
            assert (await http.get("/dashboard/snapshot")).status_code == 200
        async with httpx.AsyncClient(base_url=base) as http:
            bearer = {"authorization": f"Bearer {token}"}
            assert (await http.get("/dashboard/snapshot", headers=bearer)).status_code == 200


@pytest.mark.parametrize("content", ["", "\n"])
def test_an_empty_token_file_stops_start_up_with_one_line(tmp_path: Path, content: str) -> None:
    (tmp_path / ".fanout").mkdir()
    (tmp_path / ".fanout" / "admin-token").write_text(content)
    result = subprocess.run(
        [FANOUT, "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("fanout: ")
    assert result.stderr.strip().endswith(
        "admin-token is empty: delete it to make a new one, or set FANOUT_ADMIN_TOKEN"
    )
