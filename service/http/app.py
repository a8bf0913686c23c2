"""Routes and the app factory. Each route only wires the steps of its module:

bytes -> verified -> decoded action -> publish outcome -> HTTP answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import metrics
from ..config import Settings
from ..streams import connection, embedded
from ..streams.connection import Client
from ..streams.publisher import Publisher
from ..streams.refusals import Refusals
from . import asyncapi
from .admin import AdminGuard
from .dashboard import Dashboard
from .errors import EXCEPTION_HANDLERS, Unavailable, json_response
from .receiver import Receiver
from .stats_collector import StreamStats

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("service")

WEBHOOK_PATH = "/webhooks/voucherify"


def readiness(publisher: Publisher) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """200 when Redis takes writes now: 503 also on a replica (a failover not followed
    yet), or while it refuses writes, so a load balancer stops sending deliveries here."""

    async def ready(request: Request) -> Response:
        refused = await publisher.writable()
        if refused is None:
            return json_response({"status": "ready", "durability": publisher.waiter.state()})
        raise Unavailable(f"redis does not take writes: {refused}")

    return ready


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


def metrics_endpoint(
    stats: StreamStats,
) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def scrape(request: Request) -> Response:
        await stats.refresh()
        return Response(metrics.exposition(stats), media_type=CONTENT_TYPE_LATEST)

    return scrape


def asyncapi_endpoint(settings: Settings) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """The document of the streams and of the server in use (the embedded one included)."""
    password_file = embedded.password_file_of(settings.redis_url, settings.data_dir)
    served = asyncapi.served(
        settings.stream_prefix,
        settings.redis_url,
        settings.redis_cluster,
        str(password_file) if password_file else "",
    )

    async def document(request: Request) -> Response:
        return Response(served, media_type="application/json")

    return document


class App(Starlette):
    """The Starlette app, with ``POST /webhooks/voucherify`` answered before its middleware.

    The receiver is a plain ASGI callable that renders each of its refusals itself
    and needs none of the stack around the other routes (Starlette's server-error
    and exception middleware, the admin guard, the router): a webhook delivery goes
    to it from here, every other request through the stack. Measured in-process on
    the mixed load (round before last): the router, its matching, the exception
    middleware's wrappers and the admin guard cost about 15 us of CPU per delivery.
    The route stays in the router too, so any other method on the path is answered
    405 there.
    """

    def __init__(self, *args: Any, receiver: ASGIApp, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == WEBHOOK_PATH and scope["method"] == "POST":
            await self.receiver(scope, receive, send)
        else:
            await Starlette.__call__(self, scope, receive, send)


def _on_sighup(reload: Callable[[], object]) -> bool:
    """Run ``reload`` on SIGHUP in this process (each worker process installs its own);
    False where signals cannot be handled here (not the main thread)."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (RuntimeError, ValueError, NotImplementedError):
        logger.warning("SIGHUP cannot reload the secrets file in this thread")
        return False
    return True


async def _stop(tasks: Sequence[asyncio.Task[Any]], grace: float) -> None:
    """Cancel ``tasks`` and wait for them, a bounded time. A cancel that lands inside a
    Redis call under errors can be lost (seen in full test runs on the loaded machine:
    the refusal flusher and the memory sampler each kept running after their cancel,
    and the app's shutdown waited until the test's timeout); so cancel again, up to
    three times, then leave what still runs to the end of the loop."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(3):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace + 1)
    if pending:
        logger.warning("%d background task(s) did not stop; leaving them", len(pending))


#: Run beside the app with its publisher, e.g. the reconciler (``reconciler.task``).
BackgroundTask: TypeAlias = Callable[[Publisher], Coroutine[Any, Any, None]]


def _receiver(
    settings: Settings,
    publisher: Publisher,
    refusals: Refusals,
    provider: TracerProvider | None,
) -> tuple[Receiver, TracerProvider | None]:
    """The webhook's receiver, and the tracer provider the app made and must shut down.

    With FANOUT_TRACING off this is the plain ``Receiver`` and nothing of OpenTelemetry
    is imported; on, the receiver in a span per delivery (``tracing.py``), its spans
    going to ``provider``, else to one made from the OTEL_* variables for this process
    (none with OTEL_SDK_DISABLED=true: then the plain receiver)."""
    if not settings.tracing:
        return Receiver(settings, publisher, refusals), None
    from ..tracing import sdk
    from .tracing import TracedReceiver

    owned = sdk.provider_from_env() if provider is None else None
    if provider is None and owned is None:
        logger.info("tracing is off: OTEL_SDK_DISABLED=true")
        return Receiver(settings, publisher, refusals), None
    used = provider or owned
    assert used is not None
    return TracedReceiver(settings, publisher, refusals, provider=used), owned


def create_app(
    settings: Settings,
    redis: Client | None = None,
    *,
    background: Sequence[BackgroundTask] = (),
    tracer_provider: TracerProvider | None = None,
) -> Starlette:
    """The ASGI app. Without ``redis`` a client is made from ``settings`` and closed on exit.

    Each of ``background`` is started with the app's publisher once the app is up
    and cancelled when it shuts down. Everything under ``/dashboard`` needs
    ``settings.admin_token``; without one it is refused (401), never open. With
    FANOUT_TRACING=1 the spans go to ``tracer_provider``, else to a provider made
    from the OTEL_* variables, flushed and shut down with the app.
    """
    if not settings.secrets and settings.secrets_file is None:
        raise ValueError("FANOUT_SECRETS: at least one webhook secret is required")
    client = redis if redis is not None else connection.from_settings(settings)
    publisher = Publisher.from_settings(client, settings)
    refusal_counts = Refusals(client, publisher.keys, settings.redis_timeout)
    receiver, owned_provider = _receiver(settings, publisher, refusal_counts, tracer_provider)
    stream_stats = StreamStats(
        client,
        publisher.keys,
        settings.redis_timeout,
        settings.stream_maxlen,
        memory=publisher.memory,
        durability=publisher.waiter,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # ServerRefused (an evicting maxmemory-policy, protected mode, auth, ACL) stops
        # start-up: `fanout serve` says it in one line before any worker starts.
        memory = await publisher.check_server(allow_eviction=settings.allow_eviction)
        if memory is not None:
            (logger.warning if memory[1] else logger.info)(memory[0])
        promise = await publisher.check_durability()
        (logger.warning if promise.at_risk else logger.info)(promise.line)
        if not await publisher.ping():
            logger.warning("redis does not answer yet; webhooks get 503 until it does")
        tasks = [asyncio.create_task(run(publisher)) for run in background]
        tasks.append(asyncio.create_task(connection.follow_master(client)))
        tasks.append(asyncio.create_task(refusal_counts.run()))
        # An older version's dedup keys are read until none is left (streams/legacy.py).
        tasks.append(asyncio.create_task(publisher.legacy.watch()))
        reloads = settings.secrets_file is not None and _on_sighup(receiver.reload_secrets)
        # Apart from the others: shutdown never waits more than a second on it.
        sampler = asyncio.create_task(publisher.memory.run())
        # What start-up built (modules, the 72 webhook Structs, the app) lives as long as
        # the process: out of the collector's way, a full collection no longer walks it.
        # Measured (bench/paced.py, 4,757 deliveries/s, mixed load, AOF off): p99
        # 2.7-2.9 -> 1.7-2.2 ms; the 25-45 ms pauses of the full collections were gone.
        gc.freeze()
        try:
            yield
        finally:
            if reloads:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            gc.unfreeze()
            publisher.memory.stop()
            await _stop([*tasks, sampler, *publisher.memory.pending()], settings.redis_timeout)
            if redis is None:
                await client.aclose()
            if owned_provider is not None:  # exports what its batches still hold
                await asyncio.to_thread(owned_provider.shutdown)

    dashboard = Dashboard(settings, publisher)
    return App(
        receiver=receiver,
        routes=[
            # First: the router tries routes in order, and this one takes nearly every request.
            Route(WEBHOOK_PATH, receiver, methods=["POST"]),
            *dashboard.routes(),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readiness(publisher), methods=["GET"]),
            Route("/metrics", metrics_endpoint(stream_stats), methods=["GET"]),
            Route("/asyncapi.json", asyncapi_endpoint(settings), methods=["GET"]),
        ],
        # Only /dashboard is guarded; the webhook and the probes pass straight through.
        middleware=[Middleware(AdminGuard, settings=settings)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
