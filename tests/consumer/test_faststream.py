"""FastStream (0.7) subscribers in consumer groups on the service's streams: the decoder of
service.faststream hands them the typed events, and acknowledgement is FastStream's own
(docs/consumers.md, "FastStream"), set here against the Consumer's rules."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage

from service import CompletionEvent, StreamEvent
from service.faststream import DeadLetters, decoder, stream
from service.results import VoucherImportResult
from service.testing import Fanout, entry_fields, sample

ROOT = Path(__file__).resolve().parents[2]


async def until(check: Callable[[], Any], what: str) -> None:
    """Wait for ``check()`` (sync or async) to be true; fail naming ``what`` after 30 s."""
    try:
        async with asyncio.timeout(30):
            while True:
                value = check()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


@asynccontextmanager
async def running(broker: RedisBroker) -> AsyncIterator[RedisBroker]:
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def pending(fanout: Fanout, key: str, group: str) -> list[dict[str, Any]]:
    rows = await fanout.redis.xpending_range(key, group, min="-", max="+", count=100)
    return [
        {
            "entry": row["message_id"].decode(),
            "consumer": row["consumer"].decode(),
            "deliveries": row["times_delivered"],
        }
        for row in rows
    ]


def test_stream_names_the_service_keys() -> None:
    assert stream("VOUCHERS.IMPORT") == "voucherify:{VOUCHERS.IMPORT}:completed"
    assert stream("VOUCHERS.IMPORT", progress=True) == "voucherify:{VOUCHERS.IMPORT}:progress"
    # the other spelling of a type names the stream of its canonical one
    assert stream("bus_val_rule.created", prefix="p") == (
        "p:{business_validation_rule.created}:events"
    )
    assert stream("custom") == "voucherify:{custom}:events"
    with pytest.raises(ValueError, match="no progress stream"):
        stream("voucher.published", progress=True)


async def test_a_subscriber_gets_the_typed_event_and_a_return_acknowledges(
    fanout: Fanout,
) -> None:
    key = stream("VOUCHERS.IMPORT", prefix=fanout.prefix)
    broker = RedisBroker(fanout.url)
    got: list[StreamEvent] = []

    @broker.subscriber(stream=StreamSub(key, group="billing", consumer="c1"), decoder=decoder)
    async def handle(event: StreamEvent) -> None:
        got.append(event)

    event = sample("VOUCHERS.IMPORT", status="FAILED", id="aa_1")
    async with running(broker):
        await fanout.publish(event)
        await until(lambda: got, "the handler")
        await until(lambda: fanout.redis.xinfo_groups(key), "the group")
    [received] = got
    assert received == event and isinstance(received, CompletionEvent)
    assert isinstance(received.result, VoucherImportResult)
    assert await pending(fanout, key, "billing") == []  # a return: XACK, as under Consumer


async def test_a_batch_subscriber_gets_a_list_of_typed_events(fanout: Fanout) -> None:
    key = stream("voucher.published", prefix=fanout.prefix)
    events = [sample("voucher.published", id=f"evt_{n}") for n in range(3)]
    await fanout.redis.xgroup_create(key, "crm", id="0", mkstream=True)
    await fanout.publish(*events)  # before the subscriber starts: one read takes all three
    broker = RedisBroker(fanout.url)
    got: list[list[StreamEvent]] = []

    @broker.subscriber(
        stream=StreamSub(key, group="crm", consumer="c1", batch=True), decoder=decoder
    )
    async def handle(batch: list[StreamEvent]) -> None:
        got.append(batch)

    async with running(broker):
        await until(lambda: sum(map(len, got)) == 3, "the batch")
    assert [event for batch in got for event in batch] == events
    assert await pending(fanout, key, "crm") == []


async def test_a_raise_leaves_the_entry_pending_and_only_a_claiming_subscriber_delivers_it_again(
    fanout: Fanout,
) -> None:
    key = stream("ORDERS.IMPORT", prefix=fanout.prefix)
    broker = RedisBroker(fanout.url)
    calls: list[tuple[str, str, int]] = []

    async def handle(event: StreamEvent, message: RedisStreamMessage, who: str) -> None:
        # Its own delivery count, where Consumer counts for the handler and stops at 5.
        calls.append((event.id, who, await message.get_delivery_count()))
        if event.id == "aa_bad":
            raise ValueError("always fails")

    # FastStream 0.7's default ack policy, REJECT_ON_ERROR: a raise is a "reject", which
    # on a Redis stream does nothing: the entry stays pending, unacknowledged.
    reader = StreamSub(key, group="billing", consumer="reader")
    broker.subscriber(stream=reader, decoder=decoder)(_named(handle, "reader"))
    [ok, bad, after] = [sample("ORDERS.IMPORT", id=i) for i in ("aa_ok", "aa_bad", "aa_after")]
    async with running(broker):
        await fanout.publish(ok, bad)
        await until(lambda: len(calls) == 2, "both events")
        await fanout.publish(after)  # read after aa_bad: the reader never goes back
        await until(lambda: len(calls) == 3, "the event after")
        [left] = await pending(fanout, key, "billing")
    assert [c[0] for c in calls] == ["aa_ok", "aa_bad", "aa_after"]
    assert (left["consumer"], left["deliveries"]) == ("reader", 1)

    # A subscriber with min_idle_time reads with XAUTOCLAIM only (and only that): it
    # takes the pending entry again and again, with no limit and no dead letter.
    claims = RedisBroker(fanout.url)
    claimer = StreamSub(key, group="billing", consumer="claimer", min_idle_time=50)
    claims.subscriber(stream=claimer, decoder=decoder)(_named(handle, "claimer"))
    async with running(claims):
        await until(lambda: len(calls) >= 3 + 6, "six more deliveries")
    again = calls[3:]
    assert {c[:2] for c in again} == {("aa_bad", "claimer")}
    assert [c[2] for c in again[:6]] == [2, 3, 4, 5, 6, 7]  # past the Consumer's 5: no poison
    assert await fanout.dead_letters() == []
    [left] = await pending(fanout, key, "billing")
    assert left["entry"] == (await fanout.redis.xrange(key))[1][0].decode()


async def test_dead_letters_gives_faststream_the_consumers_limit_on_deliveries(
    fanout: Fanout,
) -> None:
    key = stream("ORDERS.IMPORT", prefix=fanout.prefix)
    limit = DeadLetters(max_deliveries=3, prefix=fanout.prefix)
    calls: list[tuple[str, str, int]] = []

    async def handle(event: StreamEvent, message: RedisStreamMessage, who: str) -> None:
        calls.append((event.id, who, await message.get_delivery_count()))
        raise ValueError("always fails")

    reader, claims = (
        RedisBroker(fanout.url, middlewares=[limit]),
        RedisBroker(fanout.url, middlewares=[limit]),
    )
    sub = StreamSub(key, group="billing", consumer="reader")
    reader.subscriber(stream=sub, decoder=decoder)(_named(handle, "reader"))
    sub = StreamSub(key, group="billing", consumer="claimer", min_idle_time=200)
    claims.subscriber(stream=sub, decoder=decoder)(_named(handle, "claimer"))
    event = sample("ORDERS.IMPORT", id="aa_bad")
    async with running(reader), running(claims):
        [entry_id] = await fanout.publish(event)
        await until(fanout.dead_letters, "the dead letter")

        async def acknowledged() -> bool:
            return await pending(fanout, key, "billing") == []

        await until(acknowledged, "the ack")
    # The reader runs it once, the claimer twice; the reader's own count may read 2
    # already (nothing keeps its claim while it runs, so the claimer may take it then).
    assert sorted(c[1] for c in calls) == ["claimer", "claimer", "reader"]
    assert {c[0] for c in calls} == {"aa_bad"}
    assert [c[2] for c in calls if c[1] == "claimer"] == [2, 3]
    [letter] = await fanout.dead_letters()
    assert {k: letter[k] for k in ("reason", "group", "consumer", "stream", "entry_id")} == {
        "reason": "poison",
        "group": "billing",
        "consumer": "claimer",
        "stream": key,
        "entry_id": entry_id,
    }
    assert (letter["deliveries"], letter["error"]) == ("3", "ValueError: always fails")
    assert letter["body"] == entry_fields(event)[b"event"].decode()  # as Consumer files it


async def test_an_event_that_does_not_decode_is_dead_lettered_at_the_limit(
    fanout: Fanout,
) -> None:
    # FastStream decodes inside the middlewares' handler scope: a decoder's failure counts
    # as the handler's (Consumer dead-letters such an entry at its first delivery).
    key = stream("ORDERS.IMPORT", prefix=fanout.prefix)
    claims = RedisBroker(fanout.url, middlewares=[DeadLetters(3, prefix=fanout.prefix)])
    sub = StreamSub(key, group="billing", consumer="claimer", min_idle_time=20)

    @claims.subscriber(stream=sub, decoder=decoder)
    async def handle(event: StreamEvent) -> None:
        raise AssertionError("never called")

    await fanout.redis.xgroup_create(key, "billing", id="0", mkstream=True)
    await fanout.redis.xadd(key, {"type": "ORDERS.IMPORT", "event": "{not json"})
    await fanout.redis.xreadgroup("billing", "reader", {key: ">"})  # delivery 1, not handled
    async with running(claims):
        await until(fanout.dead_letters, "the dead letter")
    [letter] = await fanout.dead_letters()
    assert (letter["deliveries"], letter["body"]) == ("3", "{not json")
    assert letter["error"].startswith("DecodeError: JSON is malformed")
    assert await pending(fanout, key, "billing") == []


async def test_ack_first_acknowledges_before_the_handler_so_a_raise_loses_the_entry(
    fanout: Fanout,
) -> None:
    key = stream("VOUCHERS.IMPORT", prefix=fanout.prefix)
    broker = RedisBroker(fanout.url)
    failed: list[str] = []

    @broker.subscriber(
        stream=StreamSub(key, group="billing", consumer="c1"),
        decoder=decoder,
        ack_policy=AckPolicy.ACK_FIRST,
    )
    async def handle(event: StreamEvent) -> None:
        failed.append(event.id)
        raise ValueError("fails after the ack")

    async with running(broker):
        await fanout.publish(sample("VOUCHERS.IMPORT", id="aa_lost"))
        await until(lambda: failed, "the handler")
        [group] = await fanout.redis.xinfo_groups(key)
    assert failed == ["aa_lost"]
    assert (group["pending"], group["lag"]) == (0, 0)  # acknowledged: no one gets it again


def _named(handler: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``handler`` as a function of its own name (FastStream names a subscriber after it)."""

    async def named(event: StreamEvent, message: RedisStreamMessage) -> None:
        await handler(event, message, name)

    named.__name__ = named.__qualname__ = f"handle_{name}"
    return named


@pytest.mark.spawns
async def test_the_example_app_prints_each_typed_event(fanout: Fanout) -> None:
    env = {
        **os.environ,
        "FANOUT_REDIS_URL": fanout.url,
        "FANOUT_STREAM_PREFIX": fanout.prefix,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "faststream_app.py"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        keys = [stream("VOUCHERS.IMPORT", prefix=fanout.prefix)]
        keys.append(stream("voucher.published", prefix=fanout.prefix))

        async def groups() -> bool:
            return all([await fanout.redis.exists(k) for k in keys]) and all(
                [await fanout.redis.xinfo_groups(k) for k in keys]
            )

        await until(groups, "the example's groups")
        await fanout.publish(
            sample("VOUCHERS.IMPORT", status="FAILED", id="aa_1"),
            sample("voucher.published", id="evt_1"),
        )
        assert process.stdout is not None
        lines = set()
        async with asyncio.timeout(30):
            while len(lines) < 2:  # the handlers' lines, among FastStream's own log
                line = (await process.stdout.readline()).decode().rstrip("\n")
                if line.startswith(("VOUCHERS.IMPORT ", "voucher.published ")):
                    lines.add(line)
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = await process.communicate()
    assert lines == {
        "VOUCHERS.IMPORT aa_1 FAILED: 2 failed "
        "(SUMMER-0000: Duplicate resource key; SUMMER-0001: Duplicate resource key)",
        "voucher.published evt_1: voucher L0y4L",
    }
    assert process.returncode == 0, errors.decode()
