"""``fanout poll``: the reconciler on the command line, once or as a daemon.

(``fanout serve --poll`` runs it inside the server: ``reconciler.task``.) The app
token is read from ``FANOUT_VOUCHERIFY_APP_TOKEN`` only: a flag would show it in
the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from ..config import PollSettings, Settings
from ..domain.clock import iso
from ..reconciler.lease import LeaseLost
from ..reconciler.poller import LeaseBusy, PageCallback, Poller, Report
from ..reconciler.task import make_poller
from ..reconciler.voucherify_api import APIError, VoucherifyAPI
from ..streams.errors import RedisUnavailable
from ..streams.local import RedisTarget
from ..streams.publisher import Publisher
from . import flags, tools, usage
from .errors import CommandError

logger = logging.getLogger("service.poll")


def _date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date such as 2026-11-01 or 2026-11-01T08:00:00Z, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fanout poll`` to the command parsers."""
    poll = usage.add_command(
        commands,
        "poll",
        help=usage.COMMANDS["poll"],
        description="Reconcile from the Voucherify API: list the async actions, fetch the "
        "detail of finished ones not published yet, and publish them through the same dedup "
        "as the webhook. Needs FANOUT_VOUCHERIFY_APP_ID and FANOUT_VOUCHERIFY_APP_TOKEN "
        "(Voucherify dashboard: Project settings > Application keys) and the API URL of "
        "your project's region.",
        examples="""\
  export FANOUT_VOUCHERIFY_APP_ID=... FANOUT_VOUCHERIFY_APP_TOKEN=...
  fanout poll --once                            one pass, then exit
  fanout poll --once --since 2026-11-01         backfill from a date
  fanout poll --api-url https://us1.api.voucherify.io   a daemon, US region""",
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
    flags.add(poll, flags.POLL)
    poll.set_defaults(handler=cmd_poll)


def cmd_poll(args: argparse.Namespace) -> int:
    poll = flags.poll_settings(args)
    poll.require_credentials("by fanout poll")
    settings, target = tools.resolve(args)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        report = asyncio.run(_run(args, settings, poll, target))
    except RedisUnavailable:
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
    args: argparse.Namespace, settings: Settings, poll: PollSettings, target: RedisTarget
) -> Report | None:
    client = await tools.connect(settings, target)
    try:
        publisher = Publisher.from_settings(client, settings)
        await publisher.check_durability()
        async with VoucherifyAPI(poll) as api:
            poller = make_poller(publisher, api, poll, settings.dedup_ttl)
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
