"""The one failure an operator command reports itself."""

from __future__ import annotations

from ..errors import FanoutError


class CommandError(FanoutError):
    """A failure to report in one line, exit status 1."""
