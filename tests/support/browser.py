"""Real headless Chromium (Debian's package) driven by Playwright, for the dashboard tests."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None and os.environ.get("FANOUT_REQUIRE_BROWSER") == "1":
    raise RuntimeError("FANOUT_REQUIRE_BROWSER=1 but no chromium on PATH")

#: Mark a test (or ``pytestmark`` of a module) that needs the browser.
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); CI installs it"
)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A launched Playwright ``Browser``; closed at exit."""
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
