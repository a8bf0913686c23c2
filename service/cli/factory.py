"""The app built from the environment alone, for uvicorn's ``factory=True``.

``fanout serve --workers N`` runs N processes; each one imports this module and
calls ``app()``, so everything a worker needs travels in ``FANOUT_*`` variables
that the parent sets before forking: ``config.export`` of its whole settings.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp

from .. import logs
from ..config import Settings
from ..http.app import BackgroundTask, create_app
from ..http.proxies import behind_proxies
from ..reconciler import task


def build(settings: Settings, background: Sequence[BackgroundTask] = ()) -> ASGIApp:
    """The ASGI app for ``settings``, as ``fanout serve`` runs it.

    The sender's address is taken from ``X-Forwarded-For`` only when the peer
    is one of ``settings.trusted_proxies`` (uvicorn's own proxy-header
    handling is turned off by ``fanout serve``, so this is the only place).
    """
    return behind_proxies(create_app(settings, background=background), settings.trusted_proxies)


def app() -> ASGIApp:
    """The app of one worker process, configured by the environment (``config.export``
    of the parent's settings)."""
    settings = Settings.from_env()
    logs.setup_as(settings.log_level, settings.log_format)
    # Every worker may run the reconciler; its lease lets one of them poll at a time.
    return build(settings, background=task.background(None, settings))
