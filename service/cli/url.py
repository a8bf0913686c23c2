"""``fanout url``: the Redis URL of this folder's ``fanout serve``, for other tools.

The same Redis every ``fanout`` command uses (``--redis-url``, else
``FANOUT_REDIS_URL``, else the running local server's record), printed alone on
stdout so that a shell can pass it on::

    REDIS_URL="$(fanout url --password)" node consume.js
    redis-cli -u "$(fanout url --password)" XLEN 'voucherify:{VOUCHERS.IMPORT}:completed'

Without ``--password`` the password is left out (safe to paste anywhere); the
embedded Valkey's is kept in ``<data dir>/redis-password``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..streams import local
from . import flags, usage
from .errors import CommandError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = usage.add_command(
        commands,
        "url",
        help=usage.COMMANDS["url"],
        description="Print the Redis URL the other commands use (the running `fanout serve` "
        "of this folder, else FANOUT_REDIS_URL or --redis-url) on one line: without its "
        "password, or with --password for a client to connect with.",
        examples="""\
  fanout url                                    redis://127.0.0.1:16379/0
  fanout url --password                         redis://:…@127.0.0.1:16379/0
  REDIS_URL="$(fanout url --password)" node dist/consume.js
  redis-cli -u "$(fanout url --password)" XLEN 'voucherify:{VOUCHERS.IMPORT}:completed'""",
    )
    parser.add_argument(
        "--password", action="store_true", help="include the password (for a client to use)"
    )
    flags.add(parser, ["--redis-url", "--data-dir"])
    parser.set_defaults(handler=cmd_url)


def cmd_url(args: argparse.Namespace) -> int:
    try:
        target = local.find_redis(
            args.redis_url, data_dir=Path(args.data_dir) if args.data_dir else None
        )
    except local.NoRedis as exc:
        raise CommandError(str(exc)) from None
    for note in target.notes:
        print(f"fanout: {note}", file=sys.stderr)
    print(target.url if args.password else local.without_password(target.url)[0])
    return 0
