"""The reconciler as a background task of the server.

``fanout serve`` runs it whenever the API credentials (FANOUT_VOUCHERIFY_APP_ID,
FANOUT_VOUCHERIFY_APP_TOKEN) are set: Voucherify sends no webhook for async
actions, so reading them from the API is how their completions arrive.
``--no-poll`` (FANOUT_POLL=0) turns it off; ``--poll`` (FANOUT_POLL=1) asks for
it, and then missing credentials stop start-up. Every worker process may run
it; the lease lets one of them poll at a time.
"""

from __future__ import annotations

import dataclasses
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


def background(requested: bool | None, settings: Settings) -> list[BackgroundTask]:
    """The reconciler as a task of ``fanout serve``, or none: ``requested`` is
    ``--poll``/``--no-poll`` (None when neither was given), else ``PollSettings.active``."""
    poll = PollSettings.from_env()
    if requested is not None:
        poll = dataclasses.replace(poll, enabled=bool(requested))
    if not poll.active:
        return []
    poll.require_credentials("by fanout serve --poll (FANOUT_POLL=1)")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def reconcile(publisher: Publisher) -> None:
        async with VoucherifyAPI(poll) as api:
            await make_poller(publisher, api, poll, settings.dedup_ttl).run_forever(poll.interval)

    return [reconcile]
