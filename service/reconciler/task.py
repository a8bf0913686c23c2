"""The reconciler as a background task of the server (``fanout serve --poll``, FANOUT_POLL=1).

Every worker process may run it; the lease lets one of them poll at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeAlias

from ..config import PollSettings, Settings
from ..streams.publisher import Publisher
from .poller import Poller
from .voucherify_api import VoucherifyAPI

#: What ``http.app.create_app`` runs beside the app, given the app's publisher.
BackgroundTask: TypeAlias = Callable[[Publisher], Coroutine[Any, Any, None]]


def make_poller(publisher: Publisher, api: VoucherifyAPI, poll: PollSettings, ttl: int) -> Poller:
    """A poller that looks back no further than the dedup memory of ``ttl`` seconds:
    further back, a completion could be published twice."""
    return Poller(publisher, api, page_size=poll.page_size, lookback=timedelta(seconds=ttl))


def background(requested: bool, settings: Settings) -> list[BackgroundTask]:
    """The reconciler as a task of ``fanout serve`` when ``--poll`` or FANOUT_POLL=1, else none."""
    poll = PollSettings.from_env()
    if not (requested or poll.enabled):
        return []
    poll.require_credentials("by fanout serve --poll (FANOUT_POLL=1)")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def reconcile(publisher: Publisher) -> None:
        async with VoucherifyAPI(poll) as api:
            await make_poller(publisher, api, poll, settings.dedup_ttl).run_forever(poll.interval)

    return [reconcile]
