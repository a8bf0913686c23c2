"""Testing a consumer's handler with service.testing: in process, then on a real Redis.

    pip install voucherify-fanout pytest pytest-asyncio
    pytest examples/test_handler.py

No conftest.py: the ``fanout`` fixture comes from the package's pytest plugin.
"""

from __future__ import annotations

import pytest

from service import CompletionEvent, StreamEvent, WebhookEvent
from service.results import VoucherImportResult
from service.testing import Fanout, deliver, sample
from service.webhook_data import EventVoucherPublishedData

pytestmark = pytest.mark.asyncio


class Billing:
    """The code under test: keeps failed import rows and published voucher codes, and
    fails while its CRM is down (``outage`` more calls)."""

    def __init__(self, outage: int = 0) -> None:
        self.outage = outage
        self.failed_rows: list[tuple[str, str | None, str | None]] = []
        self.published: list[str | None] = []

    async def handle(self, event: StreamEvent) -> None:
        if self.outage:
            self.outage -= 1
            raise ConnectionError("CRM unavailable")
        match event:
            case CompletionEvent(result=VoucherImportResult(failed=failed)):
                self.failed_rows += [(event.id, row.code, row.reason) for row in failed or []]
            case WebhookEvent(data=EventVoucherPublishedData(voucher=voucher)) if voucher:
                self.published.append(voucher.code)


async def test_failed_import_rows_are_kept() -> None:
    billing = Billing()
    done = await deliver(billing.handle, sample("VOUCHERS.IMPORT", status="FAILED", id="aa_1"))
    assert [event.id for event in done.acked] == ["aa_1"]
    assert billing.failed_rows == [
        ("aa_1", "SUMMER-0000", "Duplicate resource key"),
        ("aa_1", "SUMMER-0001", "Duplicate resource key"),
    ]


async def test_a_crm_outage_is_retried_until_it_passes() -> None:
    billing = Billing(outage=2)
    done = await deliver(billing.handle, sample("voucher.published"))
    assert [failure.error for failure in done.retried] == ["ConnectionError: CRM unavailable"] * 2
    assert len(done.acked) == 1 and billing.published == ["L0y4L"]  # the vendor's example voucher


async def test_an_event_that_always_fails_is_dead_lettered() -> None:
    billing = Billing(outage=99)
    done = await deliver(billing.handle, sample("ORDERS.IMPORT", id="aa_9"))
    [poisoned] = done.poisoned
    assert poisoned.deliveries == 5  # the Consumer's max_deliveries
    assert poisoned.letter["reason"] == "poison"
    assert poisoned.letter["error"] == "ConnectionError: CRM unavailable"


async def test_on_a_real_redis_with_a_real_consumer(fanout: Fanout) -> None:
    billing = Billing()
    types = ["VOUCHERS.IMPORT", "voucher.published"]
    async with fanout.consuming(billing.handle, "billing", types=types) as consumer:
        await fanout.publish(
            sample("VOUCHERS.IMPORT", status="FAILED", id="aa_2"),
            sample("voucher.published", data={"voucher": {"code": "SPRING-10"}}),
        )
        await fanout.settled(consumer)
    assert billing.published == ["SPRING-10"]
    assert [row[0] for row in billing.failed_rows] == ["aa_2", "aa_2"]
    assert consumer.stats.handled == 2
