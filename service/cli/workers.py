"""How ``fanout serve`` runs uvicorn: in this process, or as N worker processes
sharing the listening socket.

Either way uvicorn runs behind the front door (``http.front_door``: its
protocol and limits) on the socket ``serve`` bound at start. Workers build their
app from the environment (``factory.app``), so the settings travel whole in
``FANOUT_*`` variables (``config.export``), and SIGHUP is handed to each worker
(it reads its secrets file again) rather than restarting them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp

from .. import config, metrics
from ..config import PollSettings, Settings
from ..http import front_door
from ..http.app import WEBHOOK_PATH, create_app
from ..http.proxies import behind_proxies
from ..reconciler import task

#: The app of one worker process, for uvicorn's ``factory=True``.
FACTORY = "service.cli.factory:app"
#: How uvicorn runs, with one worker or several.
UVICORN: dict[str, Any] = {
    "loop": "uvloop",
    # http: httptools, with the front door's limits (front_door.FrontDoorConfig).
    "lifespan": "on",
    "log_config": None,  # keep the structured logging of cmd_serve (and factory.app)
    "server_header": False,
    # Client addresses are the peer's: X-Forwarded-For is not trusted by default.
    "proxy_headers": False,
    "access_log": False,
    "timeout_graceful_shutdown": 10,
}


def serve_here(
    settings: Settings, poll: bool | None, listener: socket.socket, limits: front_door.Limits
) -> int:
    """Run the app in this process until SIGINT or SIGTERM; 1 when it did not start."""
    uvicorn_config = front_door.FrontDoorConfig(
        create_app(settings, background=task.background(poll, settings)),
        limits=limits,
        one_write=WEBHOOK_PATH,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        **UVICORN,
    )
    # The sender's address comes from X-Forwarded-For only via a trusted proxy
    # (as factory.build does for the workers).
    app = cast("ASGIApp", uvicorn_config.app)  # the app object given just above
    uvicorn_config.app = behind_proxies(app, settings.trusted_proxies)
    server = uvicorn.Server(uvicorn_config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal
    # again for the handler that was there before; make that one a no-op so
    # a requested shutdown exits 0 after the embedded server is stopped.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[listener])
    return 0 if server.started else 1


def serve_workers(
    settings: Settings,
    workers: int,
    poll: bool | None,
    listener: socket.socket,
    limits: front_door.Limits,
) -> int:
    """Run ``workers`` processes sharing one listening socket.

    Each worker builds its app from the environment (``service.cli.factory``), so
    the settings resolved here (flags, the local secret, the embedded server's
    URL, the durability decided) are exported whole first (``config.export``).
    On SIGTERM the parent stops every worker gracefully and exits 0.
    """
    poll_settings = PollSettings.from_env()
    enabled = poll_settings.enabled if poll is None else poll  # --poll/--no-poll win
    config.export(settings, dataclasses.replace(poll_settings, enabled=enabled))
    # The limits travel to each worker inside the (pickled) config; each keeps its own cap.
    uvicorn_config = front_door.FrontDoorConfig(
        FACTORY,
        limits=limits,
        one_write=WEBHOOK_PATH,
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        **UVICORN,
    )
    # Counters of every worker go to files, so any worker's /metrics is the sum.
    with metrics.shared_by_processes():
        # What uvicorn.run does with workers, on the socket bound at start.
        _workers_class()(uvicorn_config, sockets=[listener]).run()
    return 0


def _workers_class() -> type[Any]:
    from uvicorn.supervisors import Multiprocess

    class Workers(Multiprocess):
        """uvicorn's supervisor, but SIGHUP is handed to each worker, which reads its
        secrets file again (``http.app``), instead of restarting every worker."""

        def handle_hup(self) -> None:
            for process in self.processes:
                # A worker still starting has no SIGHUP handler yet, and the signal's
                # default action would end it (seen in a full CI run: one of two workers
                # gone after the rotation). Once it serves, its handler is in place, and
                # the reload still reads a file changed while it started.
                ready = process.wait_until_ready(
                    self.config.timeout_worker_healthcheck, self.should_exit
                )
                if ready and process.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGHUP)

    return Workers
