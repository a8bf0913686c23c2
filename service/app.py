"""Routes and the app factory. Each route only wires the steps of its module:

bytes -> verified -> decoded action -> publish outcome -> HTTP answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import msgspec
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import connection, events, intake, metrics
from .config import Settings
from .errors import (
    EXCEPTION_HANDLERS,
    InvalidPayload,
    MalformedJSON,
    Problem,
    Unavailable,
    json_response,
)
from .publish import Accepted, Conflict, Outcome, Publisher
from .signature import HEADER, Verifier

logger = logging.getLogger("service")

WEBHOOK_PATH = "/webhooks/voucherify"


def _classify(error: msgspec.ValidationError) -> str:
    """Dead-letter reason of a body that is JSON but not a known async action."""
    message = str(error)
    if message.endswith("at `$.type`") or "required field `type`" in message:
        return "unknown_type"
    return "invalid_payload"


class Receiver:
    """The webhook endpoint and the state it needs, built once per app."""

    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self.verifier = Verifier(secret.key for secret in settings.secrets)

    async def webhook(self, request: Request) -> Response:
        type_ = "unknown"
        try:
            intake.check_client(request, self.settings.allow_ips)
            intake.check_declared_length(request, self.settings.max_body_bytes)
            intake.check_media_type(request)
            body = await intake.read_body(request, self.settings.max_body_bytes)
            self.verifier.verify(body, request.headers.getlist(HEADER))
            received_at = datetime.now(UTC)
            action = await self._decode(body, received_at)
            type_ = action.type
            outcome = await self.publisher.publish(action, received_at)
            if isinstance(outcome, Conflict):
                await self.publisher.dead_letter(
                    "conflict",
                    f"same id and request_id as entry {outcome.entry_id}, different content",
                    body,
                    received_at,
                )
        except Problem as problem:
            metrics.DELIVERIES.labels(type_, problem.error).inc()
            if problem.status >= 500:
                logger.warning("webhook answered %s: %s", problem.status, problem.__cause__)
            raise
        metrics.DELIVERIES.labels(type_, _outcome_name(outcome)).inc()
        return _answer(action, outcome)

    async def _decode(self, body: bytes, received_at: datetime) -> events.AnyAction:
        try:
            return events.decode(body)
        except msgspec.ValidationError as exc:
            await self.publisher.dead_letter(_classify(exc), str(exc), body, received_at)
            raise InvalidPayload(str(exc)) from None
        except msgspec.DecodeError as exc:
            # Authenticated, so kept: nothing the sender signed is lost.
            await self.publisher.dead_letter("malformed_json", str(exc), body, received_at)
            raise MalformedJSON(str(exc)) from None

    async def ready(self, request: Request) -> Response:
        if await self.publisher.ping():
            return json_response({"status": "ready"})
        raise Unavailable("redis does not answer")


def _outcome_name(outcome: Outcome) -> str:
    return type(outcome).__name__.lower()


def _answer(action: events.AsyncAction, outcome: Outcome) -> Response:
    if isinstance(outcome, Accepted):
        return json_response(
            {
                "status": "accepted",
                "id": action.id,
                "stream": outcome.stream,
                "entry_id": outcome.entry_id,
            },
            202,
        )
    # Duplicates, conflicts and stale progress all mean: already have it.
    return json_response({"status": "duplicate", "id": action.id, "entry_id": outcome.entry_id})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


BackgroundTask: TypeAlias = Callable[[Publisher], Coroutine[Any, Any, None]]


def create_app(
    settings: Settings,
    redis: Redis | RedisCluster | None = None,
    *,
    background: Sequence[BackgroundTask] = (),
) -> Starlette:
    """The ASGI app. Without ``redis`` a client is made from ``settings`` and closed on exit.

    Each of ``background`` is started with the app's publisher once the app is up
    and cancelled when it shuts down.
    """
    if not settings.secrets:
        raise ValueError("FANOUT_SECRETS: at least one webhook secret is required")
    client = redis if redis is not None else connection.from_settings(settings)
    publisher = Publisher.from_settings(client, settings)
    receiver = Receiver(settings, publisher)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await publisher.check_durability()
        if not await publisher.ping():
            logger.warning("redis does not answer yet; webhooks get 503 until it does")
        tasks = [asyncio.create_task(run(publisher)) for run in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if redis is None:
                await client.aclose()

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, receiver.webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", receiver.ready, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
