"""The ops dashboard: one page, kept live by server-sent events read from the streams.

``GET /dashboard`` serves the page (plain HTML and JS, uPlot for charts);
``/dashboard/snapshot`` gives the state to draw first, read from the streams'
own history (entry ids are times: the last two minutes' rates and the last
hour's completions are there when the page opens), ``/dashboard/events``
streams every new entry and, every two seconds, group, dead-letter, refusal
(counts, and the latest refusals with their details), Redis and reconciler
figures. ``/dashboard/dead-letters/{id}`` is one letter
with its body. Refusals per minute and reason come from Redis-side counters
that every worker adds to (``streams.refusals``).
Who may reach any of it is decided before a route runs (``admin.AdminGuard``):
the admin token, always; a ``?token=`` on the page becomes a cookie.

What the page shows of one entry is made in ``dashboard_entries.py``, the
figures sent every two seconds in ``dashboard_figures.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import Settings
from ..domain.actions import TYPES
from ..domain.event_types import KNOWN as EVENT_TYPES
from ..streams import records, replies, stats
from ..streams.publisher import Publisher
from ..streams.replay import Replayer, find_letter
from .admin import COOKIE, PREFIX
from .dashboard_entries import order, summary
from .dashboard_figures import Figures
from .errors import Problem, json_response

STATIC = Path(__file__).parent / "static"
#: Webhook events listed (newest first).
MAX_WEBHOOK_EVENTS = 30
STATS_EVERY = 2.0
#: Seconds of per-type rates the page opens with (its rate chart's window).
RATE_WINDOW = 120


_ENTRY_ID = re.compile(r"\d+-\d+")


class LetterNotFound(Problem):
    status = 404
    error = "not_found"


_encoder = msgspec.json.Encoder()


class Dashboard:
    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self._token = settings.admin_token
        self._replayer = Replayer(publisher.redis, settings)
        self._keys = publisher.keys
        self._records = publisher.records
        # redis-py's annotations of stream replies are loose unions; read them as Any.
        self._redis: Any = publisher.redis
        self._streams = stats.known_streams(self._keys)
        self._figures = Figures(settings, publisher)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self.page, methods=["GET"]),
            Route("/dashboard/snapshot", self.snapshot, methods=["GET"]),
            Route("/dashboard/events", self.events, methods=["GET"]),
            Route("/dashboard/dead-letters/{entry_id}", self.letter, methods=["GET"]),
            Route(
                "/dashboard/dead-letters/{entry_id}/replay", self.replay_letter, methods=["POST"]
            ),
            Mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static"),
        ]

    async def page(self, request: Request) -> Response:
        if "token" in request.query_params and self._token is not None:
            # Keep the token out of the address bar and history: a cookie from now on.
            response: Response = RedirectResponse(PREFIX, status_code=303)
            response.set_cookie(
                COOKIE,
                self._token.reveal(),
                httponly=True,
                samesite="strict",
                path=PREFIX,
                secure=request.url.scheme == "https",
            )
            return response
        return FileResponse(STATIC / "dashboard.html", headers={"cache-control": "no-store"})

    async def snapshot(self, request: Request) -> Response:
        now_ms = int(time.time() * 1000)
        hour_start = now_ms - 3_600_000
        rate_start = now_ms // 1000 - RATE_WINDOW
        rates: dict[str, list[int]] = {}
        done = [0] * 60
        failed = [0] * 60
        recent_failed: list[dict[str, Any]] = []
        in_flight: dict[str, dict[str, Any]] = {}
        webhook_events: list[dict[str, Any]] = []
        for stream, kind in self._streams.items():
            if kind != "dead":
                for entry_id, fields in replies.rows(
                    await self._redis.xrange(stream, min=rate_start * 1000, count=20_000)
                ):
                    second = int(entry_id.split("-")[0]) // 1000 - rate_start
                    type_ = replies.text(fields.get(b"type"))
                    if 0 <= second <= RATE_WINDOW:
                        rates.setdefault(type_, [0] * (RATE_WINDOW + 1))[second] += 1
            if kind == "completed":
                for entry_id, fields in replies.rows(
                    await self._redis.xrange(stream, min=hour_start, count=20_000)
                ):
                    minute = min(59, (int(entry_id.split("-")[0]) - hour_start) // 60_000)
                    bucket = failed if fields.get(b"status") == b"FAILED" else done
                    bucket[minute] += 1
                for entry_id, fields in replies.rows(await self._redis.xrevrange(stream, count=20)):
                    item = summary(kind, entry_id, fields)
                    if item["status"] == "FAILED" or item["failed_count"]:
                        recent_failed.append(item)
            elif kind == "events":
                for entry_id, fields in replies.rows(
                    await self._redis.xrevrange(stream, count=MAX_WEBHOOK_EVENTS)
                ):
                    webhook_events.append(summary(kind, entry_id, fields))
            elif kind == "progress":
                page = replies.rows(await self._redis.xrevrange(stream, count=200))
                for entry_id, fields in reversed(page):
                    item = summary(kind, entry_id, fields)
                    in_flight[item["id"]] = item
        for item in list(in_flight.values()):
            legacy = self._keys.done(item["type"], item["id"])
            record = records.field("done", item["id"])
            if await self._records.holds(self._redis, item["type"], record, legacy):
                del in_flight[item["id"]]
        dead = [
            summary("dead", entry_id, fields)
            for entry_id, fields in replies.rows(
                await self._redis.xrevrange(self._keys.dead_letters(), count=50)
            )
        ]
        recent_failed.sort(key=lambda item: str(item["entry_id"]), reverse=True)
        webhook_events.sort(key=lambda item: order(item["entry_id"]), reverse=True)
        return json_response(
            {
                "now": now_ms,
                "types": [*TYPES, *EVENT_TYPES],
                "hour": {"start": hour_start, "done": done, "failed": failed},
                "rates": {"start": rate_start, "types": rates},
                "failed": recent_failed[:30],
                "in_flight": sorted(in_flight.values(), key=lambda i: str(i["entry_id"])),
                "dead": dead,
                "webhook_events": webhook_events[:MAX_WEBHOOK_EVENTS],
                **await self._figures.collect(),
            }
        )

    async def events(self, request: Request) -> Response:
        return StreamingResponse(
            self._feed(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _feed(self) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        start = f"{int(time.time() * 1000)}-0"
        last = dict.fromkeys(self._streams, start)
        next_stats = 0.0
        while True:
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + STATS_EVERY
                figures = await self._figures.collect()
                yield b"event: stats\ndata: " + _encoder.encode(figures) + b"\n\n"
                if not figures["redis"]["ok"]:
                    await asyncio.sleep(1)  # the page shows Redis down; try again soon
                    continue
            found: list[tuple[str, list[Any]]] = []
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                found = await self._read(last)
            for stream, entries in found:
                for entry_id, fields in replies.rows(entries):
                    last[stream] = entry_id
                    item = summary(self._streams[stream], entry_id, fields)
                    yield b"event: entry\ndata: " + _encoder.encode(item) + b"\n\n"

    async def _read(self, last: dict[str, str]) -> list[tuple[str, list[Any]]]:
        """New entries after ``last`` as ``(stream, entries)``, RESP2 or RESP3 alike."""
        if isinstance(self._redis, RedisCluster):
            # Streams of different types live in different slots: one read each.
            found: list[tuple[str, list[Any]]] = []
            for stream, entry_id in last.items():
                found += replies.streams(await self._redis.xread({stream: entry_id}, count=200))
            if not found:
                await asyncio.sleep(1)
            return found
        return replies.streams(await self._redis.xread(last, count=200, block=1000))

    async def letter(self, request: Request) -> Response:
        """One dead letter: its fields and its body (as text; JSON pretty-printed)."""
        entry_id = request.path_params["entry_id"]
        found = (
            await find_letter(self._redis, self._keys, entry_id)
            if _ENTRY_ID.fullmatch(entry_id)
            else None
        )
        if found is None:
            raise LetterNotFound("no dead letter with this id (replayed or trimmed?)")
        letter: dict[str, Any] = dict(found.letter.as_object(found.entry_id))
        body = str(letter.get("body", ""))
        try:
            letter["body"] = msgspec.json.format(body.encode(), indent=2).decode()
            letter["body_json"] = True
        except msgspec.DecodeError:
            letter["body_json"] = False
        return json_response(letter)

    async def replay_letter(self, request: Request) -> Response:
        replayed = await self._replayer.replay(request.path_params["entry_id"])
        return json_response(
            {
                "entry_id": replayed.letter,
                "replayed": replayed.ok,
                "outcome": replayed.outcome,
                # A letter that failed again is re-filed under the reason it fails with now.
                "reason": replayed.detail.split(":", 1)[0] if replayed.outcome == "dead" else None,
                "detail": replayed.detail,
                "new_entry_id": replayed.new_entry_id,
            },
            200 if replayed.ok else 422,
        )
