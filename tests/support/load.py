"""A sender that behaves like Voucherify: signs, posts, retries on anything but a 2xx.

Used by the fault-injection tests to drive load while something breaks, and to
count what the sender saw (answers per status, recovery after an outage).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from service.domain import samples
from service.http.app import WEBHOOK_PATH
from tests.support.http import signed


@dataclass
class Delivery:
    """One async action to deliver, and what became of it."""

    id: str
    type: str
    body: bytes
    status: int | None = None  # the final answer: a 2xx, or the last failure
    entry_id: str | None = None
    attempts: int = 0
    acked_at: float | None = None


@dataclass
class Tally:
    answers: collections.Counter[int] = field(default_factory=collections.Counter)
    transport_errors: int = 0
    acks: list[float] = field(default_factory=list)  # monotonic time of each 2xx


async def until(condition: Callable[[], bool], within: float, step: float = 0.005) -> None:
    """Poll ``condition`` every ``step`` seconds; ``TimeoutError`` after ``within`` seconds."""
    for _ in range(max(1, int(within / step))):
        if condition():
            return
        await asyncio.sleep(step)
    raise TimeoutError(f"condition not met within {within}s")


def make_deliveries(count: int, types: Sequence[str]) -> list[Delivery]:
    """``count`` DONE actions with fresh ids, round robin over ``types``."""
    out = []
    for n in range(count):
        type_ = types[n % len(types)]
        action = samples.sample(type_)
        out.append(Delivery(action["id"], type_, msgspec.json.encode(action)))
    return out


class Connection:
    """A minimal keep-alive HTTP/1.1 client on one socket (httpx costs ~5 ms a request here).

    It understands only what the receiver sends: a status line, headers and a
    Content-Length body. Any surprise raises ``httpx.TransportError`` like httpx would.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            return await asyncio.wait_for(self._post(path, body, headers), 10)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            await self.close()
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._writer.write(head.encode() + b"\r\n" + body)
        await self._writer.drain()
        status_line, *lines = (await self._reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        fields = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        content = await self._reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return Answer(int(status_line.split(" ", 2)[1]), fields, content)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.content)


async def deliver(
    client: Connection,
    delivery: Delivery,
    tally: Tally,
    *,
    max_attempts: int = 200,
    backoff: float = 0.05,
    deadline: float,
) -> None:
    """Post until a 2xx, ``max_attempts`` tries or ``deadline`` (monotonic), whichever first."""
    headers = signed(delivery.body)
    while delivery.attempts < max_attempts and time.monotonic() < deadline:
        delivery.attempts += 1
        try:
            response = await client.post(WEBHOOK_PATH, delivery.body, headers)
        except httpx.TransportError:
            tally.transport_errors += 1
            await asyncio.sleep(backoff)
            continue
        tally.answers[response.status_code] += 1
        delivery.status = response.status_code
        if 200 <= response.status_code < 300:
            delivery.entry_id = response.json()["entry_id"]
            delivery.acked_at = time.monotonic()
            tally.acks.append(delivery.acked_at)
            return
        await asyncio.sleep(backoff)


async def run_load(
    base_url: str,
    deliveries: Iterable[Delivery],
    *,
    concurrency: int = 32,
    seconds: float = 50.0,
    tally: Tally | None = None,
    **options: Any,
) -> Tally:
    """Deliver all of ``deliveries`` over ``concurrency`` connections within ``seconds``."""
    tally = tally if tally is not None else Tally()
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for delivery in deliveries:
        queue.put_nowait(delivery)
    deadline = time.monotonic() + seconds
    url = httpx.URL(base_url)
    assert url.port is not None

    async def worker() -> None:
        connection = Connection(url.host, url.port)
        try:
            while not queue.empty() and time.monotonic() < deadline:
                delivery = queue.get_nowait()
                await deliver(connection, delivery, tally, deadline=deadline, **options)
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally
