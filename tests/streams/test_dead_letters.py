"""Dead letters are written and read through one struct, whoever files them."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.config import Settings
from service.consumer.poison import Poison, PoisonLetters
from service.streams import replies, scripts
from service.streams.dead_letters import DeadLetter
from service.streams.keys import Keys
from service.streams.publisher import Publisher
from tests.support.servers import ValkeyProcess


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


@pytest.mark.spawns
async def test_a_consumer_groups_letter_takes_the_same_path_bounded_in_time(
    tmp_path: Path,
) -> None:
    # consumer/poison.py ran the script itself, with no time limit: a stalled
    # server held the handler's slot for as long as it stalled.
    with ValkeyProcess(tmp_path / "v") as server:
        client = Redis.from_url(server.url)
        letters = PoisonLetters(client, Keys("t"), ttl=60, maxlen=100, timeout=0.3)
        poison = Poison("g", "c", "t:s", "1-1", 5, 5, b'{"id":"x"}', "boom")
        try:
            first = await letters.send(poison)
            assert await letters.send(poison) == first  # once per (group, stream, entry)
            server.pause()
            started = time.monotonic()
            try:
                with pytest.raises(TimeoutError):
                    await letters.send(dataclasses.replace(poison, entry_id="2-1"))
            finally:
                server.resume()
            assert time.monotonic() - started < 2
        finally:
            await client.aclose()


def test_every_reply_a_script_can_give_has_a_name() -> None:
    """``Reply`` names each code the publish, dead-letter and append scripts return."""
    for script in (
        scripts.COMPLETE_LUA,
        scripts.PROGRESS_LUA,
        scripts.EVENT_LUA,
        scripts.DEAD_LETTER_LUA,
        scripts.REPLACE_LETTER_LUA,
        scripts.APPEND_LUA,
    ):
        codes = {int(code) for code in re.findall(r"return \{(\d+),", script)}
        assert codes and codes <= {reply.value for reply in scripts.Reply}
