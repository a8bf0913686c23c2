"""What the Redis core raises: the HTTP side maps the first two to ``503`` with
``Retry-After``; ``DurabilityRefused`` stops start-up. The whole tree: ``service.errors``."""

from __future__ import annotations

from ..errors import FanoutError


class RedisUnavailable(FanoutError):
    """Redis is unreachable, too slow, or could not confirm durability.

    Raised by ``Publisher`` for every Redis failure of a delivery, with the
    original error as ``__cause__``.
    """


class StreamFull(FanoutError):
    """The stream holds ``maxlen`` entries a consumer group has not acknowledged yet.

    Nothing was written: entries are removed only once every group has
    acknowledged them, so the delivery must wait (the sender retries) until the
    consumers catch up. ``stream`` names the full stream.
    """

    #: The ``fanout_deliveries_total`` outcome of the 503.
    outcome = "stream_full"

    def __init__(self, stream: str, maxlen: int) -> None:
        self.stream = stream
        self.maxlen = maxlen
        super().__init__(
            f"{stream} is full: {maxlen} entries (FANOUT_STREAM_MAXLEN) wait for a consumer "
            "group; retry later"
        )


class MemoryFull(StreamFull):
    """The server's memory is at FANOUT_MEMORY_LIMIT percent of its maxmemory.

    Nothing was written: the delivery waits (a 503, the sender retries) until
    consumers and trimming free memory, or the operator raises maxmemory.
    """

    outcome = "memory_full"

    def __init__(self, detail: str) -> None:
        self.stream = ""
        self.maxlen = 0
        FanoutError.__init__(self, detail)


class DurabilityRefused(FanoutError):
    """FANOUT_DURABILITY asks for what this Redis server cannot give (checked at start-up);
    ``str()`` says which mode, why, and what to change."""
