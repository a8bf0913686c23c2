"""What the Redis core raises; the HTTP side maps it to ``503`` with ``Retry-After``."""

from __future__ import annotations


class RedisUnavailable(Exception):
    """Redis is unreachable, too slow, or could not confirm durability.

    Raised by ``Publisher`` for every Redis failure of a delivery, with the
    original error as ``__cause__``.
    """
