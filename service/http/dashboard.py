"""The ops dashboard: one page, kept live by server-sent events read from the streams.

``GET /dashboard`` serves the page (plain HTML and JS, uPlot for charts);
``/dashboard/snapshot`` gives the state to draw first, ``/dashboard/events``
streams every new entry and, every two seconds, group and dead-letter figures.
Who may reach any of it is decided before a route runs (``admin.AdminGuard``):
the admin token, always; a ``?token=`` on the page becomes a cookie.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import Settings
from ..domain.actions import TYPES
from ..domain.webhook_data import BY_TYPE as WEBHOOK_TYPES
from ..streams import replies, stats
from ..streams.dead_letters import DeadLetter
from ..streams.publisher import Publisher
from ..streams.replay import Replayer
from .admin import COOKIE, PREFIX
from .errors import json_response

STATIC = Path(__file__).parent / "static"
#: Failed records shown per action.
MAX_FAILURES = 20
#: Webhook events listed (newest first).
MAX_WEBHOOK_EVENTS = 30
STATS_EVERY = 2.0

_encoder = msgspec.json.Encoder()


def _summary(stream_kind: str, entry_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """What the page needs of one stream entry (never a raw body)."""
    if stream_kind == "dead":
        letter = DeadLetter.from_fields(fields)
        return {
            "kind": "dead",
            "entry_id": entry_id,
            "reason": letter.reason,
            "detail": letter.detail[:300],
            "received_at": letter.received_at,
            "size": len(letter.body),
        }
    event = msgspec.json.decode(fields.get(b"event", b"{}"))
    if stream_kind == "events":
        return {
            "kind": "events",
            "entry_id": entry_id,
            "type": replies.text(fields.get(b"type")),
            "id": replies.text(fields.get(b"id")),
            "request_id": replies.text(fields.get(b"request_id")),
            "webhook_type": event.get("webhook_type"),
            "source": (event.get("source") or {}).get("object"),
            "schema_valid": event.get("schema_valid"),
            "schema_error": (event.get("schema_error") or "")[:300] or None,
            "received_at": event.get("received_at"),
        }
    result = event.get("result") or {}
    records = result.get("failed") or result.get("errors") or []
    if isinstance(records, dict):
        records = [records]
    return {
        "kind": stream_kind,
        "entry_id": entry_id,
        "type": replies.text(fields.get(b"type")),
        "status": replies.text(fields.get(b"status")),
        "id": replies.text(fields.get(b"id")),
        "request_id": replies.text(fields.get(b"request_id")),
        "progress": event.get("progress"),
        "done_count": event.get("done_count"),
        "failed_count": event.get("failed_count"),
        "received_at": event.get("received_at"),
        "failures": [
            {
                "row": r.get("row"),
                "code": r.get("code"),
                "source_id": r.get("source_id"),
                "reason": r.get("reason") or r.get("message") or r.get("details"),
            }
            for r in records[:MAX_FAILURES]
            if isinstance(r, dict)
        ],
    }


def _order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


class Dashboard:
    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self._token = settings.admin_token
        self._replayer = Replayer(publisher.redis, settings)
        self._keys = publisher.keys
        # redis-py's annotations of stream replies are loose unions; read them as Any.
        self._redis: Any = publisher.redis
        self._streams = stats.known_streams(self._keys)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self.page, methods=["GET"]),
            Route("/dashboard/snapshot", self.snapshot, methods=["GET"]),
            Route("/dashboard/events", self.events, methods=["GET"]),
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
        done = [0] * 60
        failed = [0] * 60
        recent_failed: list[dict[str, Any]] = []
        in_flight: dict[str, dict[str, Any]] = {}
        webhook_events: list[dict[str, Any]] = []
        for stream, kind in self._streams.items():
            if kind == "completed":
                for entry_id, fields in replies.rows(
                    await self._redis.xrange(stream, min=hour_start, count=20_000)
                ):
                    minute = min(59, (int(entry_id.split("-")[0]) - hour_start) // 60_000)
                    bucket = failed if fields.get(b"status") == b"FAILED" else done
                    bucket[minute] += 1
                for entry_id, fields in replies.rows(await self._redis.xrevrange(stream, count=20)):
                    item = _summary(kind, entry_id, fields)
                    if item["status"] == "FAILED" or item["failed_count"]:
                        recent_failed.append(item)
            elif kind == "events":
                for entry_id, fields in replies.rows(
                    await self._redis.xrevrange(stream, count=MAX_WEBHOOK_EVENTS)
                ):
                    webhook_events.append(_summary(kind, entry_id, fields))
            elif kind == "progress":
                page = replies.rows(await self._redis.xrevrange(stream, count=200))
                for entry_id, fields in reversed(page):
                    item = _summary(kind, entry_id, fields)
                    in_flight[item["id"]] = item
        for item in list(in_flight.values()):
            if await self._redis.exists(self._keys.done(item["type"], item["id"])):
                del in_flight[item["id"]]
        dead = [
            _summary("dead", entry_id, fields)
            for entry_id, fields in replies.rows(
                await self._redis.xrevrange(self._keys.dead_letters(), count=50)
            )
        ]
        recent_failed.sort(key=lambda item: str(item["entry_id"]), reverse=True)
        webhook_events.sort(key=lambda item: _order(item["entry_id"]), reverse=True)
        return json_response(
            {
                "now": now_ms,
                "types": [*TYPES, *WEBHOOK_TYPES],
                "hour": {"start": hour_start, "done": done, "failed": failed},
                "failed": recent_failed[:30],
                "in_flight": sorted(in_flight.values(), key=lambda i: str(i["entry_id"])),
                "dead": dead,
                "webhook_events": webhook_events[:MAX_WEBHOOK_EVENTS],
                **await self._stats(),
            }
        )

    async def _stats(self) -> dict[str, Any]:
        groups = []
        for stream in self._streams:
            if not await self._redis.exists(stream):
                continue
            for group in await stats.groups(self._redis, stream):
                groups.append(
                    {
                        "stream": stream,
                        "group": group.name,
                        "consumers": group.consumers,
                        "pending": group.pending,
                        "lag": group.lag,
                    }
                )
        return {
            "groups": groups,
            "dead_count": int(await self._redis.xlen(self._keys.dead_letters())),
        }

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
                yield b"event: stats\ndata: " + _encoder.encode(await self._stats()) + b"\n\n"
            for stream, entries in await self._read(last):
                for entry_id, fields in replies.rows(entries):
                    last[stream] = entry_id
                    item = _summary(self._streams[stream], entry_id, fields)
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
