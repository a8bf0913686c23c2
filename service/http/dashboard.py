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
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
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

from .. import metrics
from ..config import Settings
from ..domain.actions import TYPES
from ..domain.event_types import KNOWN as EVENT_TYPES
from ..streams import records, refusals, replies, stats
from ..streams.dead_letters import DeadLetter
from ..streams.publisher import Publisher
from ..streams.replay import Replayer, find_letter
from . import front_door
from .admin import COOKIE, PREFIX
from .errors import Problem, json_response

STATIC = Path(__file__).parent / "static"
#: Failed records shown per action.
MAX_FAILURES = 20
#: Webhook events listed (newest first).
MAX_WEBHOOK_EVENTS = 30
STATS_EVERY = 2.0
#: Refused deliveries listed with their details (newest first).
LATEST_REFUSALS = 20
#: Seconds of per-type rates the page opens with (its rate chart's window).
RATE_WINDOW = 120


_ENTRY_ID = re.compile(r"\d+-\d+")


class LetterNotFound(Problem):
    status = 404
    error = "not_found"


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
        # In-flight age runs from when the action was created (else first seen).
        "created_at": event.get("created_at"),
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
        self._records = publisher.records
        self._memory_limit = publisher.memory.limit
        # redis-py's annotations of stream replies are loose unions; read them as Any.
        self._redis: Any = publisher.redis
        self._streams = stats.known_streams(self._keys)
        self._timeout = settings.redis_timeout
        # As fanout serve resolved them: its workers inherit its raised file limit.
        self._limits = front_door.limits_for(
            settings, resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        )[0]

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
            legacy = self._keys.done(item["type"], item["id"])
            record = records.field("done", item["id"])
            if await self._records.holds(self._redis, item["type"], record, legacy):
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
                "types": [*TYPES, *EVENT_TYPES],
                "hour": {"start": hour_start, "done": done, "failed": failed},
                "rates": {"start": rate_start, "types": rates},
                "failed": recent_failed[:30],
                "in_flight": sorted(in_flight.values(), key=lambda i: str(i["entry_id"])),
                "dead": dead,
                "webhook_events": webhook_events[:MAX_WEBHOOK_EVENTS],
                **await self._stats(),
            }
        )

    async def _stats(self) -> dict[str, Any]:
        redis = await self._redis_status()
        if not redis["ok"]:
            return {"redis": redis, "front_door": self._front_door()}
        groups = []
        for stream in self._streams:
            if not await self._redis.exists(stream):
                continue
            found = await stats.groups(self._redis, stream)
            length = int(await self._redis.xlen(stream)) if found else 0
            for group in found:
                groups.append(
                    {
                        "stream": stream,
                        "length": length,
                        "group": group.name,
                        "consumers": group.consumers,
                        "pending": group.pending,
                        "lag": group.lag,
                    }
                )
        return {
            "redis": redis,
            "groups": groups,
            "dead_count": int(await self._redis.xlen(self._keys.dead_letters())),
            "refusals": await refusals.history(self._redis, self._keys),
            "refused_latest": [
                {"entry_id": entry_id, **msgspec.structs.asdict(refusal)}
                for entry_id, refusal in await refusals.latest(
                    self._redis, self._keys, LATEST_REFUSALS
                )
            ],
            "reconciler": await self._reconciler(),
            "front_door": self._front_door(),
        }

    def _front_door(self) -> dict[str, Any]:
        """Connections cut off before the app since start (every worker's), and the limits."""
        limits = self._limits
        return {
            "counts": metrics.front_door_totals(),
            "limits": {
                "max_connections": limits.max_connections,
                "max_head_bytes": limits.max_head_bytes,
                "head_timeout": limits.head_timeout,
                "body_timeout": limits.body_timeout,
                "keep_alive_timeout": limits.keep_alive_timeout,
            },
        }

    async def _redis_status(self) -> dict[str, Any]:
        """Whether Redis answers, how fast, and what it is."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
                latency = (time.perf_counter() - started) * 1000
                info = await self._redis.info()
        except (RedisError, OSError, TimeoutError) as exc:
            return {"ok": False, "error": str(exc) or type(exc).__name__}
        if "redis_version" not in info and info:  # a cluster answers per node
            info = next(iter(info.values()))
        server = "valkey" if "valkey_version" in info else "redis"
        return {
            "ok": True,
            "latency_ms": round(latency, 2),
            "server": f"{server} {info.get(server + '_version') or info.get('redis_version')}",
            "memory": info.get("used_memory_human"),
            # Headroom: deliveries get 503 from memory_limit percent of maxmemory on.
            "used_memory": int(info.get("used_memory", 0)),
            "maxmemory": int(info.get("maxmemory", 0) or 0),
            "memory_limit": self._memory_limit,
            "maxmemory_policy": info.get("maxmemory_policy"),
            "evicted_keys": int(info.get("evicted_keys", 0)),
            "clients": info.get("connected_clients"),
            "aof": bool(info.get("aof_enabled")),
            "role": info.get("role"),
            "cluster": isinstance(self._redis, RedisCluster),
        }

    async def _reconciler(self) -> dict[str, Any]:
        """Whether a poller holds the lease now, and how far the API is reconciled."""
        # "<token> <expires ms>" (reconciler/lease.py; no key TTL), or an older
        # version's token with a PX expiry.
        value = replies.text(await self._redis.get(self._keys.poll_lease()))
        _, _, expires = value.partition(" ")
        if expires.isdigit():
            ttl = int(expires) - int(time.time() * 1000)
        else:
            ttl = int(await self._redis.pttl(self._keys.poll_lease()))
        mark = await self._redis.get(self._keys.poll_mark())
        return {
            "running": ttl > 0,
            "lease_ms": max(ttl, 0),
            "mark": replies.text(mark) if mark else None,
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
                figures = await self._stats()
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
