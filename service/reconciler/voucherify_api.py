"""A small client of the Voucherify async-actions API, polite under load.

Two calls: one page of the list (``GET /v1/async-actions``) and one action's
detail (``GET /v1/async-actions/{id}``). Every request goes through one rate
cap; a 429 waits as long as its ``Retry-After`` says (and holds back every other
request meanwhile); a 5xx, a timeout or a dropped connection is retried with
exponential backoff and full jitter. Other 4xx answers are not retried.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import msgspec

from ..config import PollSettings
from ..domain.clock import iso
from ..errors import FanoutError

logger = logging.getLogger("service.poll")

LIST_PATH = "/v1/async-actions"


class APIError(FanoutError):
    """The API did not give a usable answer; the message never holds credentials."""


class AuthError(APIError):
    """401 or 403: the app id or token is wrong, retrying will not help."""


class NotFound(APIError):
    """404 for one action: it is gone."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry policy: ``attempts`` tries in all, waits of up to ``base * 2**n`` capped."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


class _ListBody(msgspec.Struct):
    async_actions: list[msgspec.Raw] = []
    has_more: bool = False


_list_decoder = msgspec.json.Decoder(_ListBody)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[bytes]
    has_more: bool


class RateLimiter:
    """At most ``rate`` request starts per second, shared by every caller."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
        if delay > 0:
            await asyncio.sleep(delay)

    def hold(self, seconds: float) -> None:
        """Nobody starts a request for ``seconds`` (the server asked us to wait)."""
        self._next = max(self._next, time.monotonic() + seconds)


def retry_after(value: str | None, default: float) -> float:
    """Seconds of a ``Retry-After`` header, given as seconds or as an HTTP date."""
    if value is None:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class VoucherifyAPI:
    """The two calls the reconciler needs. Use as an async context manager."""

    def __init__(
        self,
        settings: PollSettings,
        *,
        backoff: Backoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings.require_credentials("to call the Voucherify API")
        assert settings.app_id is not None and settings.app_token is not None
        self.base_url = settings.api_url
        self._backoff = backoff or Backoff()
        self._limiter = RateLimiter(settings.rate)
        self._client = httpx.AsyncClient(
            base_url=settings.api_url,
            headers={
                "X-App-Id": settings.app_id,
                "X-App-Token": settings.app_token.reveal(),
                "Accept": "application/json",
                "User-Agent": "voucherify-fanout-reconciler",
            },
            timeout=settings.timeout,
            transport=transport,
        )
        self.calls = 0

    async def __aenter__(self) -> VoucherifyAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def list_page(self, *, limit: int, end_date: datetime | None) -> Page:
        """Up to ``limit`` actions created before ``end_date`` (newest, if None)."""
        params: dict[str, str | int] = {"limit": limit}
        if end_date is not None:
            params["end_date"] = iso(end_date)
        body = await self._get(LIST_PATH, params)
        try:
            page = _list_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise APIError(f"GET {LIST_PATH}: unexpected answer ({exc})") from None
        return Page([bytes(item) for item in page.async_actions], page.has_more)

    async def detail(self, action_id: str) -> bytes:
        """The raw JSON of one action, with its ``result``."""
        return await self._get(f"{LIST_PATH}/{action_id}", None)

    async def _get(self, path: str, params: dict[str, str | int] | None) -> bytes:
        policy = self._backoff
        problem = "no attempt made"
        for attempt in range(policy.attempts):
            await self._limiter.wait()
            self.calls += 1
            try:
                response = await self._client.get(path, params=params)
            except httpx.TransportError as exc:  # timeouts included
                problem = f"{type(exc).__name__}"
                wait = policy.delay(attempt)
            else:
                status = response.status_code
                if status < 300:
                    return response.content
                if status in (401, 403):
                    raise AuthError(
                        f"GET {path}: {status}; check FANOUT_VOUCHERIFY_APP_ID, "
                        "FANOUT_VOUCHERIFY_APP_TOKEN and the region of FANOUT_VOUCHERIFY_API_URL"
                    )
                if status == 404:
                    raise NotFound(f"GET {path}: 404")
                problem = f"HTTP {status}"
                if status == 429:
                    wait = min(
                        policy.max_retry_after,
                        retry_after(response.headers.get("retry-after"), policy.delay(attempt)),
                    )
                    self._limiter.hold(wait)
                elif status >= 500:
                    wait = policy.delay(attempt)
                else:
                    raise APIError(f"GET {path}: {status} {response.text[:200]}")
            if attempt + 1 < policy.attempts:
                logger.info("GET %s: %s, retrying in %.2fs", path, problem, wait)
                await asyncio.sleep(wait)
        raise APIError(f"GET {path}: {problem} after {policy.attempts} attempts")
