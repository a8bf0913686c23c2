"""A lane's connection at the level of bytes: commands packed in RESP, written and read back.

The group commit drives redis-py's pooled connections directly (``group_commit.py``):
these are the three things it does with one, apart from the lane's bookkeeping.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import hiredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, ResponseError


def pack(command: tuple[bytes | str | int, ...]) -> bytes:
    """One command in RESP, the wire format every Redis server reads.

    hiredis's C packer (redis-py's own dependency here): 1.5 us for a completion's
    EVALSHA against 4.1 us for the same bytes built in Python, once per delivery.
    """
    # hiredis's stub types the argument as a 1-tuple; any length is packed.
    packed: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]
    return packed


class Connections(Protocol):
    """Where a lane takes its connections: redis-py's pool, or a cluster node's."""

    async def get_connection(self) -> AbstractConnection: ...

    async def release(self, connection: AbstractConnection) -> None: ...


def write_now(connection: AbstractConnection, payload: bytes) -> bool:
    """Hand ``payload`` to a connected connection's transport at once, without a loop
    turn (what ``send_packed_command`` does, less its awaits: the connect, which an
    open connection does not need, and the drain, which waits only for a transport
    holding more than its high-water mark, 64 KiB, unsent). False, and nothing
    written, when the connection is not open or not redis-py's stream connection:
    the caller sends it the usual way."""
    writer = getattr(connection, "_writer", None)
    if writer is None or not connection.is_connected or writer.transport.is_closing():
        return False
    writer.write(payload)
    return True


async def read_replies(connection: AbstractConnection, count: int) -> list[Any]:
    """The next ``count`` replies on ``connection``, error replies as exceptions in the list.

    Straight from the connection's hiredis reader: every reply already in its buffer
    is taken in one loop, and the socket is read (64 KiB at a time) only when the
    reader runs dry, instead of two coroutine calls and their checks per reply
    through redis-py's ``read_response``. Where the connection has no hiredis parser,
    ``read_response`` it is. The whole read is bounded by the caller's timeout.
    """
    parser = connection._parser
    reader = getattr(parser, "_reader", None)
    stream = getattr(parser, "_stream", None)
    replies: list[Any] = []
    if not isinstance(parser, _AsyncHiredisParser) or reader is None or stream is None:
        for _ in range(count):
            try:
                replies.append(await connection.read_response(timeout=math.inf))
            except ResponseError as exc:
                replies.append(exc)
        return replies
    gets = reader.gets
    while True:
        reply = gets()
        while reply is not NOT_ENOUGH_DATA:
            if isinstance(reply, ConnectionError):
                raise reply
            replies.append(reply)
            if len(replies) == count:
                return replies
            reply = gets()
        data = await stream.read(1 << 16)
        if not data:
            raise ConnectionError("Connection closed by server.")
        reader.feed(data)
