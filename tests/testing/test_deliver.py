"""service.testing.deliver: a handler run in process as Consumer.run would, without Redis."""

from __future__ import annotations

import asyncio

from service import CompletionEvent, StreamEvent, WebhookEvent
from service.results import VoucherImportResult
from service.testing import deliver, entry_fields, sample
from service.webhook_data import EventVoucherPublishedData


async def test_a_handler_that_returns_acknowledges_each_typed_event() -> None:
    seen: list[StreamEvent] = []

    async def handler(event: StreamEvent) -> None:
        seen.append(event)

    failed = sample("VOUCHERS.IMPORT", status="FAILED")
    published = sample("voucher.published")
    done = await deliver(handler, failed, published)
    assert seen == done.acked == [failed, published]
    assert isinstance(seen[0], CompletionEvent) and isinstance(seen[0].result, VoucherImportResult)
    assert isinstance(seen[1], WebhookEvent) and isinstance(seen[1].data, EventVoucherPublishedData)
    assert seen[0] is not failed, "decoded from its entry, as the consumer decodes it"
    assert (done.retried, done.poisoned) == ([], [])
    assert (done.stats.handled, done.stats.failed, done.stats.poisoned) == (2, 0, 0)


async def test_a_raise_leaves_the_entry_pending_and_it_comes_back_after_the_others() -> None:
    order: list[str] = []
    attempts = {"flaky": 0}

    async def handler(event: StreamEvent) -> None:
        order.append(event.id)
        if event.id == "flaky":
            attempts["flaky"] += 1
            if attempts["flaky"] < 3:
                raise ConnectionError("billing API down")

    done = await deliver(
        handler, sample("ORDERS.IMPORT", id="flaky"), sample("ORDERS.IMPORT", id="fine")
    )
    assert order == ["flaky", "fine", "flaky", "flaky"]
    assert [e.id for e in done.acked] == ["fine", "flaky"]
    assert [(f.event.id, f.delivery, f.error) for f in done.retried] == [
        ("flaky", 1, "ConnectionError: billing API down"),
        ("flaky", 2, "ConnectionError: billing API down"),
    ]
    assert done.poisoned == []
    assert (done.stats.handled, done.stats.failed) == (2, 2)


async def test_the_last_allowed_failure_poisons_the_entry_with_its_letter() -> None:
    async def handler(event: StreamEvent) -> None:
        raise ValueError(f"cannot bill {event.id}")

    event = sample("VOUCHERS.IMPORT", id="aa_1")
    done = await deliver(handler, event, max_deliveries=3, group="billing")
    assert [f.delivery for f in done.retried] == [1, 2]
    [poisoned] = done.poisoned
    assert (poisoned.event, poisoned.deliveries) == (event, 3)
    assert poisoned.error == "ValueError: cannot bill aa_1"
    letter = poisoned.letter
    assert letter["reason"] == "poison"
    assert letter["group"] == "billing" and letter["deliveries"] == "3"
    assert letter["stream"] == "voucherify:{VOUCHERS.IMPORT}:completed"
    assert letter["entry_id"] == poisoned.entry_id
    assert letter["body"] == entry_fields(event)[b"event"].decode()
    assert letter["detail"] == (
        "delivered 3 times to group billing (max 3); last consumer deliver; "
        "last error: ValueError: cannot bill aa_1"
    )
    assert done.acked == [] and done.stats.poisoned == 1 and done.stats.failed == 3


async def test_a_handler_past_its_timeout_is_cancelled_and_retried() -> None:
    calls = 0

    async def handler(event: StreamEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # never returns by itself

    done = await deliver(handler, sample("custom"), handler_timeout=0.05)
    assert [f.error for f in done.retried] == ["handler timed out after 0.05s"]
    assert len(done.acked) == 1


async def test_an_entry_that_does_not_decode_is_poisoned_without_a_run() -> None:
    async def handler(event: StreamEvent) -> None:
        raise AssertionError("never called")

    done = await deliver(handler, {"type": "VOUCHERS.IMPORT", "event": '{"type": 1}'})
    [poisoned] = done.poisoned
    assert poisoned.event is None and poisoned.deliveries == 1
    assert poisoned.error.startswith("cannot decode the event: ")
    assert done.retried == [] and done.stats.failed == 0
