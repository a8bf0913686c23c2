"""How ``fanout`` and each command introduce themselves in ``--help``: a line, examples."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

EXIT_STATUS = "exit status: 0 ok, 1 failure (one line on stderr), 2 usage or configuration error"


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
