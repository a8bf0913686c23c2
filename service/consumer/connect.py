"""A Redis client for a consumer, found without configuration when none is given.

``open_redis`` takes the URL passed, else ``FANOUT_REDIS_URL``, else the Redis
of the running local ``fanout serve`` (``service.streams.local``), checks that
it answers, and says on stderr which server it connected to. What it reads of
the environment, it reads through ``service.config.discovery`` alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

from redis.exceptions import RedisError

from ..config import discovery
from ..streams import connection
from ..streams.connection import Client
from ..streams.local import NoRedis, RedisTarget, find_redis

__all__ = ["NoRedis", "RedisTarget", "open_redis"]

#: Longer than any read's BLOCK (``Consumer(block=...)``, 1 s by default).
SOCKET_TIMEOUT = 10.0


async def open_redis(
    url: str | None = None,
    *,
    data_dir: str | Path | None = None,
    announce: bool = True,
) -> tuple[Client, RedisTarget]:
    """A client that answered PING, and where its URL came from.

    Raises ``NoRedis`` (a ``LookupError``) when there is no URL and no running
    local server, and ``ConnectionError`` when the server does not answer; both
    messages are one line that says which Redis and why.
    """
    target = find_redis(url, data_dir=Path(data_dir) if data_dir else None, given_as="url")
    for note in target.notes:
        print(f"fanout: {note}", file=sys.stderr)
    # The service's own client: a waiting pool, and redis+sentinel:// URLs followed.
    client = connection.connect(target.url, cluster=target.cluster, timeout=SOCKET_TIMEOUT)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise ConnectionError(f"cannot reach Redis at {target}: {exc}") from None
    if announce:
        print(f"connected to {target}", file=sys.stderr, flush=True)
    return client, target


def stream_prefix(target: RedisTarget) -> str:
    """``FANOUT_STREAM_PREFIX``, else the local server's, else the default."""
    return discovery().stream_prefix or target.stream_prefix or "voucherify"
