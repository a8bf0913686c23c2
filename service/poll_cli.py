"""``fanout poll`` and ``fanout serve --poll``: the reconciler on the command line.

Kept apart from ``cli.py``, which only calls ``register`` and ``serve_background``.
The app token is read from ``FANOUT_VOUCHERIFY_APP_TOKEN`` only: a flag would
show it in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .config import PollSettings, Settings
from .errors import Unavailable
from .lease import LeaseLost
from .poller import LeaseBusy, PageCallback, Poller, Report
from .publish import Publisher
from .voucherify_api import APIError, VoucherifyAPI, iso

if TYPE_CHECKING:
    from .app import BackgroundTask

logger = logging.getLogger("service.poll")

# Flags of ``poll``; each one overrides the environment variable it names.
_POLL_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--api-url", "FANOUT_VOUCHERIFY_API_URL", "API base URL of your region"),
    ("--app-id", "FANOUT_VOUCHERIFY_APP_ID", "application id (the token: env only)"),
    ("--interval", "FANOUT_POLL_INTERVAL", "seconds between passes of the daemon"),
    ("--rate", "FANOUT_POLL_RATE", "most API requests per second"),
    ("--page-size", "FANOUT_POLL_PAGE_SIZE", "actions per list request, 1 to 100"),
    ("--api-timeout", "FANOUT_VOUCHERIFY_TIMEOUT", "seconds one API request may take"),
    ("--redis-url", "FANOUT_REDIS_URL", "redis URL (default: the running embedded server)"),
    ("--redis-cluster", "FANOUT_REDIS_CLUSTER", "1 to use the cluster client"),
    ("--stream-prefix", "FANOUT_STREAM_PREFIX", "prefix of every key"),
)


def _date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date such as 2026-11-01 or 2026-11-01T08:00:00Z, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fanout poll`` to the command parsers, and ``--poll`` to ``serve``."""
    poll = commands.add_parser(
        "poll", help="fetch async actions from the Voucherify API and publish what is missing"
    )
    poll.add_argument("--once", action="store_true", help="one pass, then exit")
    poll.add_argument(
        "--since", type=_date, metavar="DATE", help="backfill from DATE (UTC unless given)"
    )
    poll.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="with --once: seconds to wait for another poller's lease (default 60)",
    )
    for flag, variable, help_text in _POLL_FLAGS:
        poll.add_argument(flag, help=f"{help_text} [{variable}]")
    poll.set_defaults(handler=cmd_poll)
    serve = commands.choices.get("serve")
    if serve is not None:
        serve.add_argument(
            "--poll",
            action="store_true",
            default=None,
            help="also run the reconciler in the background [FANOUT_POLL]",
        )


def _environ(args: argparse.Namespace) -> dict[str, str]:
    from .cli import environ_with_flags

    return environ_with_flags(args, _POLL_FLAGS)


def _poller(publisher: Publisher, api: VoucherifyAPI, poll: PollSettings, ttl: int) -> Poller:
    # Further back than the dedup memory, a completion could be published twice.
    return Poller(publisher, api, page_size=poll.page_size, lookback=timedelta(seconds=ttl))


def serve_background(requested: bool, settings: Settings) -> list[BackgroundTask]:
    """The reconciler as a task of ``fanout serve`` when ``--poll`` or FANOUT_POLL=1."""
    poll = PollSettings.from_env()
    if not (requested or poll.enabled):
        return []
    poll.require_credentials("by fanout serve --poll (FANOUT_POLL=1)")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def reconcile(publisher: Publisher) -> None:
        async with VoucherifyAPI(poll) as api:
            await _poller(publisher, api, poll, settings.dedup_ttl).run_forever(poll.interval)

    return [reconcile]


def cmd_poll(args: argparse.Namespace) -> int:
    from .cli import CommandError, redis_url_for_tools

    env = _environ(args)
    settings = Settings.from_env(env)
    poll = PollSettings.from_env(env)
    poll.require_credentials("by fanout poll")
    url = redis_url_for_tools(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        report = asyncio.run(_run(args, settings, poll, url))
    except Unavailable:
        raise CommandError("poll failed: redis is unreachable or too slow") from None
    except (APIError, LeaseBusy, LeaseLost, RedisError, OSError) as exc:
        raise CommandError(f"poll failed: {str(exc) or type(exc).__name__}") from None
    if report is None:
        return 0
    print(f"poll: {report.summary()}")
    if report.failed:
        raise CommandError(f"{report.failed} actions could not be fetched; the next pass retries")
    return 0


async def _run(
    args: argparse.Namespace, settings: Settings, poll: PollSettings, url: str
) -> Report | None:
    from . import connection

    client = connection.connect(url, cluster=settings.redis_cluster, timeout=settings.redis_timeout)
    try:
        publisher = Publisher.from_settings(client, settings)
        await publisher.check_durability()
        async with VoucherifyAPI(poll) as api:
            poller = _poller(publisher, api, poll, settings.dedup_ttl)
            if args.once:
                with _progress(args.since) as on_page:
                    return await poller.run_once(since=args.since, wait=args.wait, on_page=on_page)
            await _until_signalled(_daemon(poller, args.since, poll.interval))
            return None
    finally:
        await client.aclose()


async def _until_signalled(daemon: Coroutine[Any, Any, None]) -> None:
    """Run ``daemon`` until SIGTERM or SIGINT, then cancel it so it releases the lease.

    The cancellation is repeated: one that lands while the HTTP client shields
    a connection's clean-up can be absorbed there.
    """
    task = asyncio.create_task(daemon)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        task.result()  # a crash of the daemon is reported


async def _daemon(poller: Poller, since: datetime | None, interval: float) -> None:
    logger.info("polling every %ss", interval)
    if since is not None:
        with _progress(since) as on_page:
            report = await poller.run_once(since=since, wait=interval, on_page=on_page)
        logger.info("backfill: %s", report.summary())
    await poller.run_forever(interval)


@contextlib.contextmanager
def _progress(since: datetime | None) -> Iterator[PageCallback | None]:
    """A progress bar over the time span of a backfill, on stderr."""
    if since is None:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    start = datetime.now(UTC)
    span = max(1.0, (start - since).total_seconds())
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(f"backfill since {iso(since)}", total=span)

        def on_page(report: Report) -> None:
            done = span if report.reached is None else (start - report.reached).total_seconds()
            bar.update(
                task,
                completed=min(span, done),
                description=(
                    f"backfill since {iso(since)}: {report.pages} pages, "
                    f"{report.published} published"
                ),
            )

        yield on_page
        bar.update(task, completed=span)
