"""What the operator commands (``tail``, ``stats``, ``dlq``) share: flags, the client, output.

Each command module has one ``register(commands)``; ``register`` here adds them
all to the ``fanout`` parser. Redis comes from ``--redis-url`` or
``FANOUT_REDIS_URL``, else the embedded server of a running ``fanout serve``.
A Redis that cannot be reached is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from . import connection, replies
from .cli import CommandError, environ_with_flags, redis_url_for_tools
from .config import Settings
from .keys import Keys

if TYPE_CHECKING:
    from rich.console import Console

Client: TypeAlias = "Redis | RedisCluster"
Command: TypeAlias = Callable[[argparse.Namespace, Client, Settings], Awaitable[int]]

# Flag of the tools -> the variable it overrides.
_TOOL_FLAGS = (
    ("--redis-url", "FANOUT_REDIS_URL", "redis://, rediss:// or unix:// URL"),
    ("--redis-cluster", "FANOUT_REDIS_CLUSTER", "1 to use the cluster client"),
    ("--stream-prefix", "FANOUT_STREAM_PREFIX", "prefix of every key"),
    ("--data-dir", "FANOUT_DATA_DIR", "where `fanout serve` keeps its embedded server"),
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tail``, ``stats`` and ``dlq`` to the ``fanout`` parser."""
    from . import dlq, stats, tail

    tail.register(commands)
    stats.register(commands)
    dlq.register(commands)


def add_redis_flags(parser: argparse.ArgumentParser) -> None:
    for flag, variable, help_text in _TOOL_FLAGS:
        parser.add_argument(flag, help=f"{help_text} [{variable}]")


def settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(environ_with_flags(args, _TOOL_FLAGS))


def handler(command: Command) -> Callable[[argparse.Namespace], int]:
    """An argparse handler: connect, run ``command``, turn Redis failures into one line."""

    def run(args: argparse.Namespace) -> int:
        config = settings(args)
        url = redis_url_for_tools(config)
        try:
            return asyncio.run(_with_client(command, args, config, url))
        except KeyboardInterrupt:
            # Ctrl-C is how a follow ends; anywhere else it cut the work short.
            return 0 if getattr(args, "follow", False) else 130
        except (RedisError, OSError, TimeoutError) as exc:
            raise CommandError(
                f"Redis at {shown(url)} failed: {exc or type(exc).__name__}"
            ) from None

    return run


async def _with_client(
    command: Command, args: argparse.Namespace, config: Settings, url: str
) -> int:
    try:
        client = connection.connect(url, cluster=config.redis_cluster, timeout=config.redis_timeout)
    except (ValueError, RedisError) as exc:
        raise CommandError(f"cannot use Redis URL {shown(url)}: {exc}") from None
    try:
        try:
            async with asyncio.timeout(config.redis_timeout + 1):
                await client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise CommandError(
                f"cannot reach Redis at {shown(url)}: {exc or 'timed out'}"
            ) from None
        return await command(args, client, config)
    finally:
        await client.aclose()


def shown(url: str) -> str:
    """``url`` with its password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def keys(config: Settings) -> Keys:
    return Keys(config.stream_prefix)


def entry_time(entry_id: bytes | str | None) -> str:
    """The time in a stream entry id (milliseconds since the epoch), in RFC 3339."""
    if not entry_id:
        return ""
    millis = int(replies.text(entry_id).split("-", 1)[0])
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def console(stderr: bool = False) -> Console:
    """A rich console; wide when not a terminal, so piped tables keep one row per line."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(shutil.get_terminal_size((160, 24)).columns, 160)
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)
