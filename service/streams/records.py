"""Dedup records: fields of time-bucketed hashes that carry no key TTL.

A dedup record (a delivery's entry id and content digest, a progress step, an
action's completion marker, a dead letter's body) used to be a key of its own
with ``EX FANOUT_DEDUP_TTL``. Those were the only keys with a TTL, so under a
``volatile-*`` maxmemory policy (the managed-Redis default) the server evicted
exactly them first, and a resend was published twice. Now nothing the service
relies on has a key TTL: for our data a ``volatile-*`` server acts as
``noeviction``, and a full one is a 503.

The service expires records itself. Time is cut into buckets of ``width``
seconds (a quarter of the window, at least 1 s); the records of one hash tag
(one type, or ``dead``) written in one bucket go into one hash,
``<P>:{<tag>}:dedup:<bucket>``. A lookup asks the ``count`` newest buckets,
which cover the whole window, so "exactly once" holds for at least
``FANOUT_DEDUP_TTL``; the first write of a process into a new bucket deletes
those that fell out of the window (UNLINK: freed in the background), so a record
is held at most ``1.25 x FANOUT_DEDUP_TTL``. The publisher does that for the
publish scripts, after them (``due``, ``sweep``: one command per type and bucket,
none per delivery); the dead-letter scripts do it themselves.

Field names are a 12-byte BLAKE2b digest of the record's kind and identity
(96 bits: for 10^9 records a collision chance below 10^-10); values are the
entry id, with a 16-hex content digest for completions and webhook events.
Measured (``python -m bench.memory_records``, 200,000 records of real shape): 106 B per
record on Redis 7.0, 70 B on Valkey 9, where a key with a TTL took 261 and 204 B.

Per-field expiry (HSETEX/HEXPIRE, Redis >= 7.4 and Valkey 9) was not taken: one
layout for every server the service supports (Redis 7.0 has none), and these
buckets already cost less than a field with its own expiry.

The cost, measured (``python bench/records.py --trees <main> <this>``, 20,000
mixed deliveries, medians of 3 interleaved rounds, shared machine): the
receiver's CPU per delivery 0.93x on Redis 7.0 and 1.05x on Valkey 9 (noise:
rounds differ by 30 %); the server's time per script call 0.96x and 1.28x
(Valkey: 14.8 -> 18.9 us; a lookup reads up to 5 buckets, one HMGET each for a
completion's two records).

Records written by an older version (keys with a TTL) are still read, for one
dedup window after an upgrade (``legacy`` keys in the scripts).
"""

from __future__ import annotations

import hashlib
import time

from .connection import Client
from .keys import Keys

#: Buckets per dedup window: a record lives from 1 to 1.25 windows.
PER_WINDOW = 4
#: Stale buckets a script deletes when it opens a new one (a type idle for up to
#: this many buckets still gets its old ones deleted on its next write).
SWEEP = 64


def field(kind: str, *identity: str) -> bytes:
    """The field of one record: a digest of its kind and (length-prefixed) identity.

    Each part written as ``keys.part`` writes it (inline: 1.4 against 1.8 us, timeit,
    for a completion's two parts; ``tests/streams/test_keys.py`` holds them equal)."""
    text = ":".join([kind, *[f"{len(value.encode())}.{value}" for value in identity]])
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


class Records:
    """Which bucket hashes hold the records of the window, newest first."""

    __slots__ = ("_cache", "_keys", "count", "due", "width")

    def __init__(self, keys: Keys, ttl: int) -> None:
        self._keys = keys
        self.width = max(1, -(-ttl // PER_WINDOW))
        #: Buckets a lookup asks: together they cover at least ``ttl`` seconds.
        self.count = -(-ttl // self.width) + 1
        self._cache: dict[str, tuple[int, tuple[str, ...]]] = {}
        #: Tags whose newest bucket changed for this process, and its number: the
        #: buckets that fell out of the window are still to be deleted (``sweep``).
        self.due: dict[str, int] = {}

    def buckets(self, tag: str, now: float | None = None) -> tuple[str, ...]:
        """The bucket keys of ``tag`` (a type, or ``dead``) to read, newest (the one
        written) first."""
        number = int((time.time() if now is None else now) // self.width)
        cached = self._cache.get(tag)
        if cached is not None and cached[0] == number:
            return cached[1]
        keys = tuple(self._keys.dedup(tag, number - i) for i in range(self.count))
        self._cache[tag] = (number, keys)
        self.due[tag] = number
        return keys

    def stale(self, tag: str, number: int) -> tuple[str, ...]:
        """The buckets of ``tag`` that left the window when bucket ``number`` opened: the
        ``SWEEP`` newest of them (a type idle longer keeps older ones)."""
        newest_stale = number - self.count
        return tuple(self._keys.dedup(tag, newest_stale - i) for i in range(SWEEP))

    async def sweep(self, client: Client) -> None:
        """Delete the buckets that left the window of every ``due`` tag: one UNLINK per
        tag (its keys share its hash slot), all in one pipeline. Tags stay due until
        it succeeds; an error propagates."""
        due = list(self.due.items())
        async with client.pipeline(transaction=False) as pipe:
            for tag, number in due:
                # execute_command: a cluster pipeline's ``unlink`` is a coroutine.
                pipe.execute_command("UNLINK", *self.stale(tag, number))
            await pipe.execute()
        for tag, number in due:
            if self.due.get(tag) == number:
                del self.due[tag]

    async def holds(self, client: Client, tag: str, name: bytes, legacy: str) -> bool:
        """Whether a record is kept (in a bucket, or in an older version's key)."""
        async with client.pipeline(transaction=False) as pipe:
            for bucket in self.buckets(tag):
                pipe.hexists(bucket, name)
            pipe.exists(legacy)
            found = await pipe.execute()
        return any(bool(value) for value in found)
