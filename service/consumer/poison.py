"""Dead letters of consumer groups: entries a group gave up on (reason ``poison``), and
entries removed from the stream before the group acknowledged them (``trimmed``).

Written once per (group, stream, entry id), so a consumer that dies between the
dead letter and its XACK writes no second letter when the entry comes back.
The fields are those of ``streams.dead_letters.DeadLetter``; the body is the
entry's event JSON, empty for a trimmed entry (it is gone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..streams import dead_letters
from ..streams.connection import Client
from ..streams.dead_letters import DeadLetter
from ..streams.keys import Keys
from ..streams.records import Records, field
from ..streams.scripts import DEAD_LETTER_LUA

#: How long filing one letter may take: the consumer's client's socket timeout
#: (``connect.SOCKET_TIMEOUT``), so a stalled server cannot hold a handler slot.
TIMEOUT = 10.0


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

    def letter(self, received_at: datetime) -> DeadLetter:
        """The dead letter filed for this entry (reason ``poison``, the event as body)."""
        return DeadLetter.of(
            "poison",
            self.detail,
            self.body,
            received_at,
            group=self.group,
            consumer=self.consumer,
            stream=self.stream,
            entry_id=self.entry_id,
            deliveries=self.deliveries,
            error=self.error,
        )


class PoisonLetters:
    def __init__(
        self, redis: Client, keys: Keys, *, ttl: int, maxlen: int, timeout: float = TIMEOUT
    ) -> None:
        self._keys = keys
        self._records = Records(keys, ttl)
        self._maxlen = maxlen
        self._run = dead_letters.bounded(redis.register_script(DEAD_LETTER_LUA), timeout)

    async def send(self, poison: Poison) -> str:
        """Write the letter (once); its entry id. Redis errors, ``TimeoutError`` and
        ``StreamFull`` propagate."""
        return await self._file(poison.letter(datetime.now(UTC)))

    async def send_trimmed(self, group: str, consumer: str, stream: str, entry_id: str) -> str:
        """File a ``trimmed`` letter for an entry the group never acknowledged (once)."""
        letter = DeadLetter.of(
            "trimmed",
            f"entry {entry_id} of {stream} was deleted from the stream before group {group} "
            "acknowledged it; its content is lost to this group",
            b"",
            datetime.now(UTC),
            group=group,
            consumer=consumer,
            stream=stream,
            entry_id=entry_id,
        )
        return await self._file(letter)

    async def _file(self, letter: DeadLetter) -> str:
        assert letter.group is not None and letter.stream is not None and letter.entry_id
        seen = self._keys.poison_seen(letter.group, letter.stream, letter.entry_id)
        record = field("poison", letter.group, letter.stream, letter.entry_id)
        filed = await dead_letters.file(
            self._run,
            self._keys,
            (seen, record),
            letter,
            records=self._records,
            maxlen=self._maxlen,
        )
        return filed.entry_id
