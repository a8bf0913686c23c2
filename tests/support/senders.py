"""Senders that behave like Voucherify under a fault, every attempt kept with its times;
what the fault runs (``failover_runs``, ``cluster_faults``) read from them."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from service.http.app import WEBHOOK_PATH
from tests.support.http import signed
from tests.support.load import Connection, Delivery


@dataclass
class Attempt:
    started: float
    ended: float
    status: int  # 0: no answer (the connection failed)


class Senders:
    """``concurrency`` keep-alive connections delivering at ``rate``/s, each retried after
    50 ms until a 2xx; every attempt is kept with its times."""

    def __init__(self, base_url: str, deliveries: list[Delivery], rate: float, concurrency: int):
        url = httpx.URL(base_url)
        assert url.port is not None
        self.host, self.port = url.host, url.port
        self.deliveries = deliveries
        self.rate = rate
        self.concurrency = concurrency
        self.attempts: list[Attempt] = []
        #: The deliveries offered so far: ``deliveries`` up to ``enough()``.
        self.offered: list[Delivery] = []
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._stop_at = math.inf
        self._paced = False

    def enough(self, at: float) -> None:
        """Offer no delivery after ``at`` (monotonic)."""
        self._stop_at = at

    async def run(self, until: float) -> None:
        """Until every delivery is acknowledged or ``until`` (monotonic)."""
        pacer = asyncio.create_task(self._pace())
        try:
            await asyncio.gather(*(self._worker(until) for _ in range(self.concurrency)))
        finally:
            pacer.cancel()

    async def _pace(self) -> None:
        started = time.monotonic()
        for n, delivery in enumerate(self.deliveries):
            delay = started + n / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() >= self._stop_at:
                break
            self.offered.append(delivery)
            self._queue.put_nowait(delivery)
        self._paced = True

    def _done(self) -> bool:
        return self._paced and all(d.acked_at is not None for d in self.offered)

    async def _worker(self, until: float) -> None:
        connection = Connection(self.host, self.port)
        try:
            while time.monotonic() < until and not self._done():
                try:
                    delivery = await asyncio.wait_for(self._queue.get(), 0.2)
                except TimeoutError:
                    continue
                await self._deliver(connection, delivery, until)
        finally:
            await connection.close()

    async def _deliver(self, connection: Connection, delivery: Delivery, until: float) -> None:
        headers = signed(delivery.body)
        while time.monotonic() < until:
            delivery.attempts += 1
            started = time.monotonic()
            try:
                answer = await connection.post(WEBHOOK_PATH, delivery.body, headers)
            except httpx.TransportError:
                self.attempts.append(Attempt(started, time.monotonic(), 0))
                await asyncio.sleep(0.05)
                continue
            ended = time.monotonic()
            self.attempts.append(Attempt(started, ended, answer.status_code))
            delivery.status = answer.status_code
            if 200 <= answer.status_code < 300:
                delivery.entry_id = answer.json()["entry_id"]
                delivery.acked_at = ended
                return
            await asyncio.sleep(0.05)


def first_2xx_after(attempts: Sequence[Attempt], fault: float) -> float | None:
    """Seconds from ``fault`` to the first 2xx of an attempt made after the first refusal
    that followed it; 0.0 when nothing was refused after it, None when no 2xx came."""
    refused = [a.ended for a in attempts if a.ended >= fault and not 200 <= a.status < 300]
    if not refused:
        return 0.0
    since = min(refused)
    later = [a.ended for a in attempts if a.started >= since and 200 <= a.status < 300]
    return min(later) - fault if later else None


def longest_pause(attempts: Sequence[Attempt], fault: float) -> float:
    """The longest time after ``fault`` in which no 2xx came (to the last 2xx)."""
    times = sorted(a.ended for a in attempts if 200 <= a.status < 300 and a.ended >= fault)
    gaps = [b - a for a, b in zip([fault, *times], times, strict=False)]
    return max(gaps, default=0.0)
