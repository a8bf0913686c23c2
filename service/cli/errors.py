"""The one failure an operator command reports itself."""

from __future__ import annotations


class CommandError(Exception):
    """A failure to report in one line, exit status 1."""
