"""The ``fanout`` command. Exit status: 0 ok, 1 failure, 2 usage or configuration.

The CLI is the leaf of the package: it imports the rest, nothing imports it. A
command's module is imported only when the command line names it: each brings what
its command runs (redis-py, httpx, uvicorn, the app), and importing all seven made
every command, ``fanout --help`` included, start in 1.1-1.3 s of CPU on the project's
2-core machine.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from .. import logs
from ..config import ConfigError
from ..domain.text import escape
from .errors import CommandError
from .usage import COMMANDS, EXIT_STATUS, package_version

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """``fanout``'s parser with ``command``'s options, every other command listed by its
    name and line (``usage.COMMANDS``) without its module; None: every command's."""
    parser = argparse.ArgumentParser(
        prog="fanout",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fanout {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, line in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(f"{__name__}.{name}").register(commands)
        else:
            commands.add_parser(name, help=line)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    # The command is the first word that is not an option (``fanout`` takes no option
    # with a value before it); anything else gets argparse's own answer from the list.
    named = next((word for word in arguments if not word.startswith("-")), "")
    parser = build_parser(named if named in COMMANDS else "")
    args = parser.parse_args(arguments)
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
