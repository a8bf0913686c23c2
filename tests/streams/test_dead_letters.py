"""Dead letters are written and read through one struct, whoever files them."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from service.config import Settings
from service.streams import replies
from service.streams.dead_letters import DeadLetter
from service.streams.keys import Keys
from service.streams.publisher import Publisher


def test_fields_round_trip_in_the_contract_order() -> None:
    letter = DeadLetter.of(
        "poison", "gave up", b'{"x":1}', datetime(2026, 11, 1, 8, tzinfo=UTC), deliveries=3
    )
    fields = letter.fields()
    assert list(fields)[:5] == ["reason", "detail", "body", "sha256", "received_at"]
    assert fields["received_at"] == "2026-11-01T08:00:00.000Z"
    assert fields["deliveries"] == "3" and "group" not in fields
    read = DeadLetter.from_fields({k.encode(): replies.as_bytes(v) for k, v in fields.items()})
    assert read == letter


async def test_publisher_files_a_letter_that_reads_back(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    publisher = Publisher.from_settings(redis, settings)
    filed = await publisher.dead_letter("invalid_payload", "bad", b"{}", datetime.now(UTC))
    again = await publisher.dead_letter("invalid_payload", "bad", b"{}", datetime.now(UTC))
    assert filed.new and not again.new and again.entry_id == filed.entry_id
    [(entry_id, fields)] = replies.rows(await redis.xrange(keys.dead_letters()))
    letter = DeadLetter.from_fields(fields)
    assert (entry_id, letter.reason, letter.body) == (filed.entry_id, "invalid_payload", b"{}")
    assert list(fields) == [b"reason", b"detail", b"body", b"sha256", b"received_at"]
