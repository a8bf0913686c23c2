"""The app built from the environment alone, for uvicorn's ``factory=True``.

``fanout serve --workers N`` runs N processes; each one imports this module and
calls ``app()``, so everything a worker needs travels in ``FANOUT_*`` variables
that the parent sets before forking.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from .app import create_app
from .config import Settings


def build(settings: Settings) -> ASGIApp:
    """The ASGI app for ``settings``, as ``fanout serve`` runs it."""
    return create_app(settings)


def app() -> ASGIApp:
    """The app of one worker process, configured by the environment."""
    return build(Settings.from_env())
