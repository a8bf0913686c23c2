"""How ``fanout`` and each command introduce themselves in ``--help``: a line, examples."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

EXIT_STATUS = "exit status: 0 ok, 1 failure (one line on stderr), 2 usage or configuration error"

#: The commands in the order ``fanout --help`` lists them, each with its line there:
#: written once, here, so the list needs none of their modules (each imports what its
#: command runs: redis-py, httpx, uvicorn; ``cli.build_parser`` imports only the one
#: the command line names). Each module's ``register`` passes its line to ``add_command``.
COMMANDS = {
    "serve": "receive webhooks and publish to Redis Streams",
    "send": "sign and post a webhook body to the receiver",
    "tail": "show recent stream entries, optionally follow",
    "stats": "streams by consumer group: lengths, pending, lag, dead",
    "dlq": "list, show and replay dead letters",
    "poll": "fetch async actions from the Voucherify API and publish what is missing",
    "url": "print the Redis URL of the local server, for other tools",
}


def package_version() -> str:
    try:
        return version("voucherify-fanout")
    except PackageNotFoundError:  # run from a checkout that is not installed
        from .. import __version__

        return __version__


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    examples: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` ends with ``examples`` (kept as written)."""
    return commands.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        epilog=f"examples:\n{examples.rstrip()}\n\n{EXIT_STATUS}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
