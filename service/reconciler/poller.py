"""The reconciler: list async actions from the Voucherify API and publish what is missing.

One pass pages backwards in time from now (``end_date`` = the oldest
``created_at`` of the page before) down to the high-water mark, and for each
listed action:

- DONE or FAILED whose (id, request_id) is already published (its dedup key is
  in Redis): nothing, no API call;
- DONE or FAILED not yet published: fetch the detail (the list has no
  ``result``) and publish it through ``Publisher.publish``, the same dedup path
  as the webhook, so an action arriving both ways is published once;
- ENQUEUED or IN_PROGRESS: publish the list item as it is (progress stream).

The mark then moves to the ``created_at`` of the oldest action that is not
finished yet (still running, or its detail could not be fetched), and never past
the pass's start (less an overlap for clock skew). Actions created before the
mark are complete and published, so the next pass stops there. Only the holder
of the lease calls the API and moves the mark.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from ..domain import actions, outbound
from ..domain.clock import iso
from ..errors import FanoutError
from ..streams.publisher import Accepted, Conflict, Publisher, Stale
from .lease import LEASE_PRELUDE, Lease, LeaseLost
from .voucherify_api import APIError, AuthError, NotFound, VoucherifyAPI

logger = logging.getLogger("service.poll")

# Move the mark only while holding the lease.  KEYS: lease, mark.  ARGV: token, mark.
SET_MARK_LUA = (
    LEASE_PRELUDE
    + """
if not held_by(KEYS[1], ARGV[1]) then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""
)

ONE_MS = timedelta(milliseconds=1)


class LeaseBusy(FanoutError):
    """Another poller held the lease for as long as we were willing to wait."""


@dataclass(slots=True)
class Report:
    """What one pass did; ``complete`` is False when it stopped early."""

    pages: int = 0
    listed: int = 0
    published: int = 0
    progress: int = 0
    already: int = 0
    duplicates: int = 0
    dead: int = 0
    failed: int = 0
    unfinished: int = 0
    api_calls: int = 0
    reached: datetime | None = None
    mark: datetime | None = None
    complete: bool = False
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        mark = iso(self.mark) if self.mark else "unchanged"
        return (
            f"{self.pages} pages, {self.listed} actions listed, {self.published} completions "
            f"published, {self.progress} progress updates, {self.already} already published, "
            f"{self.duplicates} duplicates, {self.dead} dead letters, {self.failed} failed, "
            f"{self.unfinished} unfinished; {self.api_calls} API calls; mark {mark}"
        )


PageCallback = Callable[[Report], None]


class _Stamp(msgspec.Struct):
    """Enough of a list item to page by, even when the item does not decode."""

    id: str | None = None
    created_at: str | None = None


_stamp_decoder = msgspec.json.Decoder(_Stamp)


def _created(raw: bytes) -> tuple[str | None, datetime | None]:
    try:
        stamp = _stamp_decoder.decode(raw)
        created = datetime.fromisoformat(stamp.created_at) if stamp.created_at else None
    except (msgspec.DecodeError, ValueError):
        return None, None
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return stamp.id, created


def _raise_if_cancelling() -> None:
    """Honour a cancellation that a library absorbed while shielding its clean-up."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


class Poller:
    """Reconciles the streams with the API. One instance per process."""

    def __init__(
        self,
        publisher: Publisher,
        api: VoucherifyAPI,
        *,
        page_size: int = 100,
        lookback: timedelta = timedelta(days=7),
        overlap: timedelta = timedelta(minutes=5),
        lease_ttl: float = 30.0,
    ) -> None:
        self._publisher = publisher
        self._redis = publisher.redis
        self._keys = publisher.keys
        self._api = api
        self._page_size = page_size
        self._lookback = lookback
        self._overlap = overlap
        self.lease = Lease(self._redis, self._keys.poll_lease(), ttl=lease_ttl)
        self._set_mark = self._redis.register_script(SET_MARK_LUA)

    async def mark(self) -> datetime | None:
        value = await self._redis.get(self._keys.poll_mark())
        if value is None:
            return None
        return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)

    async def run_once(
        self,
        *,
        since: datetime | None = None,
        wait: float = 60.0,
        on_page: PageCallback | None = None,
    ) -> Report:
        """One pass under the lease, waiting up to ``wait`` seconds for it."""
        async with self.lease.kept():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while not self.lease.held:
                if loop.time() >= deadline:
                    raise LeaseBusy(
                        f"another poller holds the lease {self.lease.key} (a daemon running?)"
                    )
                await asyncio.sleep(min(0.1, self.lease.ttl / 10))
                await self.lease.try_acquire()
            return await self.poll(since=since, on_page=on_page)

    async def run_forever(self, interval: float) -> None:
        """Daemon: a pass every ``interval`` seconds while holding the lease, else stand by."""
        async with self.lease.kept():
            while True:
                if self.lease.held:
                    try:
                        report = await self.poll()
                    except LeaseLost as exc:
                        logger.warning("poll stopped: %s", exc)
                    except AuthError as exc:
                        logger.error("poll failed: %s", exc)
                    except Exception as exc:  # the daemon outlives any one pass
                        logger.warning("poll failed, retrying in %ss: %s", interval, exc)
                    else:
                        logger.info("poll: %s", report.summary())
                await asyncio.sleep(interval)
                _raise_if_cancelling()

    async def poll(
        self, *, since: datetime | None = None, on_page: PageCallback | None = None
    ) -> Report:
        """One pass; the caller holds the lease. Raises on API, Redis or lease loss."""
        self.lease.check()
        report = Report()
        calls_before = self._api.calls
        start = datetime.now(UTC)
        stored = await self.mark()
        # An action stuck unfinished holds the mark back at most ``lookback``.
        oldest = start - self._lookback
        lower = since or (max(stored, oldest) if stored else oldest)
        oldest_open: datetime | None = None
        handled: set[str] = set()
        end: datetime | None = None
        try:
            while True:
                self.lease.check()
                page = await self._api.list_page(limit=self._page_size, end_date=end)
                report.pages += 1
                stamps: list[datetime] = []
                fresh = 0
                for raw in page.items:
                    action_id, created = _created(raw)
                    if created is not None:
                        stamps.append(created)
                        if created < lower:
                            continue
                    key = action_id or raw.decode(errors="replace")
                    if key in handled:
                        continue
                    handled.add(key)
                    fresh += 1
                    report.listed += 1
                    self.lease.check()
                    if await self._reconcile(raw, report):
                        opened = created or lower
                        oldest_open = opened if oldest_open is None else min(oldest_open, opened)
                if stamps:
                    report.reached = min(stamps)
                if on_page is not None:
                    on_page(report)
                if not page.has_more or not stamps or min(stamps) < lower:
                    break
                low = min(stamps)
                # Actions at the boundary's millisecond may not all have fit in the
                # page: ask again from just after it, unless that would not move on.
                end = low + ONE_MS if fresh and (end is None or low + ONE_MS < end) else low
        finally:
            report.api_calls = self._api.calls - calls_before
        report.complete = True
        mark = start - self._overlap
        if oldest_open is not None:
            mark = min(mark, oldest_open)
        if since is not None and stored is not None and stored < since:
            mark = min(mark, stored)  # a --since later than the mark did not cover the gap
        mark = mark.replace(microsecond=mark.microsecond // 1000 * 1000)  # as stored
        if not await self._set_mark(
            keys=[self.lease.key, self._keys.poll_mark()], args=[self.lease.token, iso(mark)]
        ):
            raise LeaseLost(f"lease {self.lease.key} lost before the mark was saved")
        report.mark = mark
        return report

    async def _reconcile(self, raw: bytes, report: Report) -> bool:
        """Handle one listed action; True when it is not finished yet (hold the mark)."""
        received_at = datetime.now(UTC)
        try:
            listed = actions.decode(raw)
        except msgspec.DecodeError as exc:  # not JSON, or not a valid async action
            return await self._dead(actions.failure_reason(exc), str(exc), raw, report)
        if not listed.completed:
            outcome = await self._publisher.publish(outbound.publication(listed, received_at))
            if isinstance(outcome, Stale):  # it completed meanwhile, and that is published
                report.duplicates += 1
                return False
            report.progress += isinstance(outcome, Accepted)
            report.duplicates += not isinstance(outcome, Accepted)
            report.unfinished += 1
            return True
        if await self._publisher.published(listed.type, listed.id, listed.request_id):
            report.already += 1
            return False
        try:
            body = await self._api.detail(listed.id)
        except NotFound:
            logger.warning("async action %s is listed but gone (404); skipped", listed.id)
            report.errors.append(f"{listed.id}: 404")
            return False
        except AuthError:
            raise
        except APIError as exc:
            logger.warning("async action %s: %s; retried next pass", listed.id, exc)
            report.failed += 1
            report.errors.append(f"{listed.id}: {exc}")
            return True
        return await self._publish_detail(body, report)

    async def _publish_detail(self, body: bytes, report: Report) -> bool:
        received_at = datetime.now(UTC)
        try:
            action = actions.decode(body)
        except msgspec.DecodeError as exc:  # not JSON, or not a valid async action
            return await self._dead(actions.failure_reason(exc), str(exc), body, report)
        outcome = await self._publisher.publish(outbound.publication(action, received_at))
        if isinstance(outcome, Accepted):
            if action.completed:
                report.published += 1
            else:
                report.progress += 1
        else:
            report.duplicates += 1
        if isinstance(outcome, Conflict):
            detail = f"same id and request_id as entry {outcome.entry_id}, different content"
            await self._dead("conflict", detail, body, report)
        if not action.completed:
            report.unfinished += 1
        return not action.completed

    async def _dead(self, reason: str, detail: str, body: bytes, report: Report) -> bool:
        await self._publisher.dead_letter(reason, detail, body, datetime.now(UTC))
        logger.warning("async action dead-lettered (%s): %s", reason, detail)
        report.dead += 1
        return False
