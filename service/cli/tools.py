"""What the operator commands (``tail``, ``stats``, ``dlq``, ``poll``) share: settings, Redis.

Redis comes from ``--redis-url``, else ``FANOUT_REDIS_URL``, else the record
of a running ``fanout serve`` (``service.streams.local``); the command says on
stderr which one it connected to. A Redis that cannot be reached is one line
on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeAlias

from redis.exceptions import RedisError

from ..config import Settings, discovery
from ..streams import connection, local
from ..streams.connection import Client
from ..streams.keys import Keys
from ..streams.local import RedisTarget
from . import flags
from .errors import CommandError

Command: TypeAlias = Callable[[argparse.Namespace, Client, Settings], Awaitable[int]]


def add_redis_flags(parser: argparse.ArgumentParser) -> None:
    flags.add(parser, flags.TOOLS)


def settings(args: argparse.Namespace) -> Settings:
    return flags.settings(args)


def resolve(args: argparse.Namespace) -> tuple[Settings, RedisTarget]:
    """The settings of a command, with Redis (and its prefix) found as the module says."""
    config = settings(args)
    data_dir = getattr(args, "data_dir", None)
    try:
        target = local.find_redis(
            getattr(args, "redis_url", None),
            data_dir=Path(data_dir) if data_dir else None,
        )
    except local.NoRedis as exc:
        raise CommandError(str(exc)) from None
    for note in target.notes:
        print(f"fanout: {note}", file=sys.stderr)
    config = dataclasses.replace(config, redis_url=target.url, redis_cluster=target.cluster)
    prefix_given = getattr(args, "stream_prefix", None) or discovery().stream_prefix
    if target.stream_prefix is not None and not prefix_given:
        config = dataclasses.replace(config, stream_prefix=target.stream_prefix)
    return config, target


def handler(command: Command) -> Callable[[argparse.Namespace], int]:
    """An argparse handler: connect, run ``command``, turn Redis failures into one line."""

    def run(args: argparse.Namespace) -> int:
        config, target = resolve(args)
        try:
            return asyncio.run(_with_client(command, args, config, target))
        except KeyboardInterrupt:
            # Ctrl-C is how a follow ends; anywhere else it cut the work short.
            return 0 if getattr(args, "follow", False) else 130
        except (RedisError, OSError, TimeoutError) as exc:
            raise CommandError(
                f"Redis at {shown(target.url)} failed: {exc or type(exc).__name__}"
            ) from None

    return run


async def connect(config: Settings, target: RedisTarget) -> Client:
    """A client of ``target`` that answered a PING; says so on stderr."""
    try:
        client = connection.connect(
            target.url, cluster=config.redis_cluster, timeout=config.redis_timeout
        )
    except (ValueError, RedisError) as exc:
        raise CommandError(f"cannot use Redis URL {shown(target.url)}: {exc}") from None
    try:
        async with asyncio.timeout(config.redis_timeout + 1):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        await client.aclose()
        raise CommandError(f"cannot reach Redis at {target}: {exc or 'timed out'}") from None
    print(f"fanout: connected to {target}", file=sys.stderr, flush=True)
    return client


async def _with_client(
    command: Command, args: argparse.Namespace, config: Settings, target: RedisTarget
) -> int:
    client = await connect(config, target)
    try:
        return await command(args, client, config)
    finally:
        await client.aclose()


shown = local.mask


def keys(config: Settings) -> Keys:
    return Keys(config.stream_prefix)
