"""Which tests start processes of their own: the check behind the ``spawns`` marker.

``make test-fast`` leaves out the tests marked ``spawns`` (a Valkey or Redis server of
their own, ``fanout`` as a command, Node.js, Chromium, mypy: each costs a process start,
and most a server's). The mark is checked, not hoped for: every process a test starts
goes through ``subprocess.Popen`` (``asyncio``'s subprocesses and Playwright's driver
too), which records it here, and ``tests/conftest.py`` fails a test that started one
without the mark. The suite's shared Redis (``redis_url``) is started with ``allowed()``.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

#: The command of every process started since import, in order (None: an allowed one).
started: list[str | None] = []
_init = subprocess.Popen.__init__


def _recording_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
    command = args if isinstance(args, (str, bytes)) else " ".join(map(str, args))
    started.append(command if isinstance(command, str) else command.decode(errors="replace"))
    _init(self, args, *rest, **options)


def install() -> None:
    subprocess.Popen.__init__ = _recording_init  # type: ignore[method-assign]


@contextlib.contextmanager
def allowed() -> Iterator[None]:
    """Processes started inside are not the test's own (the session's shared server)."""
    mark = len(started)
    try:
        yield
    finally:
        started[mark:] = [None] * (len(started) - mark)
