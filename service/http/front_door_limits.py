"""The front door's limits for one worker: what ``FrontDoorProtocol`` enforces
(``front_door.py``), sized to the process's file limit.

The cap must hold below the process's file limit: when ``accept()`` fails with
EMFILE, libuv accepts and closes every queued connection and uvloop then closes
its listener (their code; measured before this, with 1,500 half heads under a
1,024-file limit: every real delivery of the next 20 s was reset).
``connection_cap`` keeps the cap, plus one listen
backlog of connections accepted in one burst before any can be closed, plus
the worker's own files, inside ``RLIMIT_NOFILE`` (``raise_file_limit`` first
raises the soft limit to the hard one).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from ..config import Settings
from ..streams.connection import POOL_SIZE

#: Files a worker holds besides client connections: its Redis pool at its fullest,
#: and 64 for the rest (an idle ``fanout serve`` holds 18: listener, loop, logs, pipes).
OWN_FILES = POOL_SIZE + 64
#: The most a listen backlog is allowed to be (uvicorn's default).
MAX_BACKLOG = 2048
#: The cap of open connections per worker where the file limit allows it.
DEFAULT_MAX_CONNECTIONS = 2048


@dataclass(frozen=True, slots=True)
class Limits:
    """What one worker allows; ``max_connections`` already fits its file limit."""

    max_head_bytes: int
    head_timeout: float
    body_timeout: float
    max_connections: int
    keep_alive_timeout: int
    backlog: int


def raise_file_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # what Linux allows by default (fs.nr_open)
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return hard if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def backlog_for(files: int) -> int:
    """The listen backlog: uvicorn's 2,048, or half of what a small file limit leaves.

    uvloop accepts everything queued in one go, before any connection can be
    closed, so the cap plus the backlog must fit. Queued connections hold no
    file: with a 1,024-file limit and an attacker reconnecting 1,500 half-heads
    at once, a backlog of 128 (cap 832) let the queue fill and real deliveries
    waited for SYN retransmits (p99 1.07-1.08 s in 2 of 3 runs); half and half
    (416 each) kept p99 at 58-229 ms in three runs.
    """
    return max(16, min(MAX_BACKLOG, (files - OWN_FILES) // 2))


def connection_cap(requested: int | None, default: int, files: int) -> tuple[int, str | None]:
    """The cap of open connections per worker under ``files`` open files, and a warning
    when ``requested`` had to be lowered to fit."""
    backlog = backlog_for(files)
    allowed = max(1, files - OWN_FILES - backlog)
    wanted = default if requested is None else requested
    if wanted <= allowed:
        return wanted, None
    if requested is None:
        return allowed, None
    return allowed, (
        f"FANOUT_MAX_CONNECTIONS {requested} does not fit the file limit of {files} "
        f"(RLIMIT_NOFILE; each connection is a file): using {allowed}"
    )


def limits_for(settings: Settings, files: int) -> tuple[Limits, str | None]:
    """The limits of ``settings`` under a file limit of ``files``, and a warning when the
    configured cap had to be lowered to fit it."""
    cap, warning = connection_cap(settings.max_connections, DEFAULT_MAX_CONNECTIONS, files)
    limits = Limits(
        max_head_bytes=settings.max_head_bytes,
        head_timeout=settings.head_timeout,
        body_timeout=settings.body_timeout,
        max_connections=cap,
        keep_alive_timeout=settings.keep_alive_timeout,
        backlog=backlog_for(files),
    )
    return limits, warning


def describe(limits: Limits, files: int, workers: int) -> str:
    """The start-up line that says what the front door allows."""
    per = " per worker" if workers > 1 else ""
    return (
        f"front door: at most {limits.max_connections} open connections{per} "
        f"(file limit {files}), heads up to {limits.max_head_bytes} bytes within "
        f"{limits.head_timeout:g} s, bodies within {limits.body_timeout:g} s, "
        f"idle connections kept {limits.keep_alive_timeout:g} s"
    )
