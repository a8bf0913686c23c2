"""Dead letters of consumer groups: entries a group gave up on, with reason ``poison``.

Written once per (group, stream, entry id), so a consumer that dies between the
dead letter and its XACK writes no second letter when the entry comes back.
Besides the contract's fields (reason, detail, body, sha256, received_at) a
poison letter names the group, consumer, stream, entry id, deliveries and the
last error; its body is the entry's event JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .keys import Keys

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

# KEYS: poison seen, dead stream.  ARGV: ttl, maxlen, then field/value pairs.
POISON_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen then return seen end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
return entry
"""


@dataclass(frozen=True, slots=True)
class Poison:
    group: str
    consumer: str
    stream: str
    entry_id: str
    deliveries: int
    max_deliveries: int
    body: bytes
    error: str

    @property
    def detail(self) -> str:
        return (
            f"delivered {self.deliveries} times to group {self.group} "
            f"(max {self.max_deliveries}); last consumer {self.consumer}; "
            f"last error: {self.error}"
        )


class PoisonLetters:
    def __init__(self, redis: Redis | RedisCluster, keys: Keys, *, ttl: int, maxlen: int) -> None:
        self._keys = keys
        self._ttl = ttl
        self._maxlen = maxlen
        self._script = redis.register_script(POISON_LUA)

    async def send(self, poison: Poison) -> str:
        """Write the letter (once); its entry id. Redis errors propagate."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        fields: dict[str, Any] = {
            "reason": "poison",
            "detail": poison.detail,
            "body": poison.body,
            "sha256": hashlib.sha256(poison.body).hexdigest(),
            "received_at": now,
            "group": poison.group,
            "consumer": poison.consumer,
            "stream": poison.stream,
            "entry_id": poison.entry_id,
            "deliveries": str(poison.deliveries),
            "error": poison.error,
        }
        args: list[Any] = [self._ttl, self._maxlen]
        for name, value in fields.items():
            args += [name, value]
        seen = self._keys.poison_seen(poison.group, poison.stream, poison.entry_id)
        entry = await self._script(keys=[seen, self._keys.dead_letters()], args=args)
        return entry.decode() if isinstance(entry, bytes) else str(entry)
