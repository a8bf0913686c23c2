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
from . import dlq, poll, send, serve, stats, tail, url
from .errors import CommandError
from .usage import EXIT_STATUS, package_version

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Receive Voucherify webhooks, verify and deduplicate them, and publish typed
events to Redis Streams; send test deliveries; watch and repair the streams."""

EPILOG = f"""\
examples:
  fanout serve                          embedded Valkey + receiver on 127.0.0.1:8000
  fanout send --sample VOUCHERS.IMPORT  post a signed sample to it
  fanout tail -f                        watch events arrive
  fanout stats                          streams, consumer groups, pending, lag
  fanout url --password                 the Redis URL, for other tools and languages
  fanout COMMAND --help                 a command's options and examples

Redis: --redis-url, else FANOUT_REDIS_URL, else the running `fanout serve`
recorded in .fanout/ (of this folder or a parent; --data-dir or
FANOUT_DATA_DIR to point elsewhere).

{EXIT_STATUS}"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanout",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fanout {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (serve, send, tail, stats, dlq, poll, url):
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Plain text at info until a command sets its own (``fanout serve``: its settings').
    logs.setup_as("info", "text")
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
