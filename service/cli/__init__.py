"""The ``fanout`` command. Exit status: 0 ok, 1 failure, 2 usage or configuration.

The CLI is the leaf of the package: it imports the rest, nothing imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .. import logs
from ..config import ConfigError
from ..domain.text import escape
from . import dlq, poll, send, serve, stats, tail
from .errors import CommandError

__all__ = ["build_parser", "main"]

DESCRIPTION = "The ``fanout`` command. Exit status: 0 ok, 1 failure, 2 usage or configuration."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fanout", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (serve, send, tail, stats, dlq, poll):
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_format = getattr(args, "log_format", "text")
    logs.setup(
        getattr(args, "log_level", "info"),
        json=None if log_format == "auto" else log_format == "json",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"fanout: configuration error: {escape(str(exc))}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"fanout: {escape(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
