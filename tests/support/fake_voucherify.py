"""A fake Voucherify async-actions API, following the documented endpoints.

``GET /v1/async-actions?limit=&end_date=`` lists up to ``limit`` actions created
strictly before ``end_date`` (the newest ones), without ``result``, in a shuffled
order (the docs promise none); ``GET /v1/async-actions/{id}`` gives one whole.
Both want the ``X-App-Id`` and ``X-App-Token`` headers. A test can queue faults
(429 with Retry-After, 500, a slow answer, a bad body) and read the call counts.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.domain import actions, samples
from service.streams.keys import Keys

APP_ID = "fake-app-id"
APP_TOKEN = "fake-token-7f3a9c2e-never-printed"


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Fault:
    """What the next matching request gets instead of its answer."""

    kind: str  # "429", "500", "slow", "body"
    seconds: float = 0.0
    path: str = ""  # "" = any request; "list" or "detail"
    body: bytes = b""


class FakeVoucherify:
    def __init__(self) -> None:
        self.actions: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.faults: deque[Fault] = deque()
        self.bad_details: dict[str, bytes] = {}
        self.broken_ids: set[str] = set()  # their detail always answers 500
        self.request_times: list[float] = []
        self.app = Starlette(
            routes=[
                Route("/v1/async-actions", self.list_actions),
                Route("/v1/async-actions/{id}", self.get_action),
            ]
        )

    # --- data ---------------------------------------------------------------

    def add(self, action: dict[str, Any]) -> dict[str, Any]:
        self.actions[action["id"]] = action
        return action

    def populate(
        self,
        count: int,
        *,
        newest: datetime | None = None,
        spacing: timedelta = timedelta(seconds=60),
        status_of: Any = None,
        first: int = 0,
    ) -> list[dict[str, Any]]:
        """``count`` actions of every type, one every ``spacing`` back from ``newest``."""
        newest = newest or datetime.now(UTC) - timedelta(hours=1)
        made = []
        for n in range(first, first + count):
            type_ = actions.TYPES[n % len(actions.TYPES)]
            status = status_of(n) if status_of else ("FAILED" if n % 10 == 9 else "DONE")
            action = samples.sample(type_, status=status, id_=f"aa_{n:06d}_{type_[:3].lower()}")
            created = newest - (n - first) * spacing
            action["created_at"] = stamp(created)
            action["updated_at"] = stamp(created + timedelta(seconds=2))
            if status == "IN_PROGRESS":
                action["progress"] = 40
            made.append(self.add(action))
        return made

    def complete(self, action_id: str, status: str = "DONE") -> dict[str, Any]:
        action = self.actions[action_id]
        action.update(
            status=status,
            progress=100,
            processing_time=900,
            operation_status="SUCCESS" if status == "DONE" else "FAILED",
            result=samples.result_for(action["type"]),
        )
        return action

    # --- endpoints ----------------------------------------------------------

    async def _fault(self, request: Request, path: str) -> Response | None:
        self.request_times.append(asyncio.get_running_loop().time())
        if (
            request.headers.get("x-app-id") != APP_ID
            or request.headers.get("x-app-token") != APP_TOKEN
        ):
            return JSONResponse({"code": 401, "key": "unauthorized"}, 401)
        if not self.faults or self.faults[0].path not in ("", path):
            return None
        fault = self.faults.popleft()
        if fault.kind == "429":
            return JSONResponse(
                {"code": 429, "key": "too_many_requests"},
                429,
                headers={"Retry-After": str(int(fault.seconds))},
            )
        if fault.kind == "500":
            return JSONResponse({"code": 500, "key": "internal"}, 500)
        if fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        return None

    async def list_actions(self, request: Request) -> Response:
        self.calls["list"] += 1
        fault = await self._fault(request, "list")
        if fault is not None:
            return fault
        try:
            limit = int(request.query_params.get("limit", "10"))
            end = request.query_params.get("end_date")
            end_date = datetime.fromisoformat(end) if end else None
        except ValueError:
            return JSONResponse({"code": 400, "key": "invalid_query"}, 400)
        if not 1 <= limit <= 100:
            return JSONResponse({"code": 400, "key": "invalid_limit"}, 400)
        before = sorted(
            (
                a
                for a in self.actions.values()
                if end_date is None or datetime.fromisoformat(a["created_at"]) < end_date
            ),
            key=lambda a: a["created_at"],
            reverse=True,
        )
        page = [{k: v for k, v in a.items() if k != "result"} for a in before[:limit]]
        random.shuffle(page)
        return JSONResponse(
            {
                "object": "list",
                "data_ref": "async_actions",
                "async_actions": page,
                "has_more": len(before) > limit,
            }
        )

    async def get_action(self, request: Request) -> Response:
        self.calls["detail"] += 1
        fault = await self._fault(request, "detail")
        if fault is not None:
            return fault
        action_id = request.path_params["id"]
        if action_id in self.broken_ids:
            return JSONResponse({"code": 500, "key": "internal"}, 500)
        if action_id in self.bad_details:
            return Response(self.bad_details[action_id], media_type="application/json")
        if action_id not in self.actions:
            return JSONResponse({"code": 404, "key": "not_found"}, 404)
        return JSONResponse(self.actions[action_id])


# --- what the reconciler's tests check -------------------------------------------


async def stream_ids(redis: Redis, keys: Keys, kind: str = "completed") -> Counter[str]:
    """How many entries each action id has, over the streams of every type."""
    counts: Counter[str] = Counter()
    for type_ in actions.TYPES:
        stream = keys.completed(type_) if kind == "completed" else keys.progress(type_)
        for _, fields in await redis.xrange(stream):
            assert fields[b"type"].decode() == type_
            counts[fields[b"id"].decode()] += 1
    return counts


def completed_ids(actions: list[dict[str, Any]]) -> set[str]:
    return {a["id"] for a in actions if a["status"] in ("DONE", "FAILED")}


def mixed(n: int) -> str:
    """Statuses of a realistic history: mostly done, some failed, a few still running."""
    if n % 25 == 3:
        return "IN_PROGRESS"
    if n % 25 == 7:
        return "ENQUEUED"
    return "FAILED" if n % 10 == 9 else "DONE"


def poll_env(redis_url: str, prefix: str, api_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``fanout poll`` or ``serve`` reading the fake API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    return (
        env
        | {
            "FANOUT_REDIS_URL": redis_url,
            "FANOUT_STREAM_PREFIX": prefix,
            "FANOUT_VOUCHERIFY_API_URL": api_url,
            "FANOUT_VOUCHERIFY_APP_ID": APP_ID,
            "FANOUT_VOUCHERIFY_APP_TOKEN": APP_TOKEN,
            "FANOUT_POLL_RATE": "1000",
        }
        | extra
    )


@dataclass
class Reconciling:
    """The fake API serving at ``api_url``, a test's Redis and keys, and ``env``: what a
    command reading that API is started with (``poll_env``)."""

    env: dict[str, str]
    redis: Redis
    keys: Keys
    fake: FakeVoucherify
    api_url: str

    async def published(self, kind: str = "completed") -> Counter[str]:
        return await stream_ids(self.redis, self.keys, kind)
