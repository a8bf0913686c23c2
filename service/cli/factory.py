"""The app built from the environment alone, for uvicorn's ``factory=True``.

``fanout serve --workers N`` runs N processes; each one imports this module and
calls ``app()``, so everything a worker needs travels in ``FANOUT_*`` variables
that the parent sets before forking.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from starlette.types import ASGIApp

from .. import logs
from ..config import Settings
from ..http.app import BackgroundTask, create_app
from ..http.proxies import TrustedProxies
from ..reconciler import task


def build(settings: Settings, background: Sequence[BackgroundTask] = ()) -> ASGIApp:
    """The ASGI app for ``settings``, as ``fanout serve`` runs it.

    The sender's address is taken from ``X-Forwarded-For`` only when the peer
    is one of ``settings.trusted_proxies`` (uvicorn's own proxy-header
    handling is turned off by ``fanout serve``, so this is the only place).
    """
    return TrustedProxies(create_app(settings, background=background), settings.trusted_proxies)


def app() -> ASGIApp:
    """The app of one worker process, configured by the environment."""
    log_format = os.environ.get("FANOUT_LOG_FORMAT", "auto")
    logs.setup(
        os.environ.get("FANOUT_LOG_LEVEL", "info"),
        json=None if log_format == "auto" else log_format == "json",
    )
    settings = Settings.from_env()
    # Every worker may run the reconciler; its lease lets one of them poll at a time.
    return build(settings, background=task.background(False, settings))
