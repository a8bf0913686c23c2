"""What the operator commands (``tail``, ``stats``, ``dlq``, ``poll``) share: settings, Redis.

Redis comes from ``--redis-url`` or ``FANOUT_REDIS_URL``, else the embedded
server of a running ``fanout serve``. A Redis that cannot be reached is one line
on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import RedisError

from ..config import Settings
from ..streams import connection
from ..streams.connection import Client
from ..streams.embedded import url_if_running
from ..streams.keys import Keys
from . import flags
from .errors import CommandError

Command: TypeAlias = Callable[[argparse.Namespace, Client, Settings], Awaitable[int]]


def add_redis_flags(parser: argparse.ArgumentParser) -> None:
    flags.add(parser, flags.TOOLS)


def settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(flags.environ(args))


def redis_url(settings: Settings) -> str:
    """Where operator commands find Redis: the configured URL, else a running embedded server."""
    url = settings.redis_url or url_if_running(settings.data_dir)
    if url is None:
        raise CommandError(
            f"FANOUT_REDIS_URL is not set and no embedded server runs in {settings.data_dir} "
            "(start `fanout serve` or set FANOUT_REDIS_URL)"
        )
    return url


def handler(command: Command) -> Callable[[argparse.Namespace], int]:
    """An argparse handler: connect, run ``command``, turn Redis failures into one line."""

    def run(args: argparse.Namespace) -> int:
        config = settings(args)
        url = redis_url(config)
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
