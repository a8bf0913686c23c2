"""An open-loop sender at a fixed rate: latency at a given load, not at saturation.

wrk is closed-loop (each connection sends its next request when the last one is
answered), so at saturation it measures how long a queue is, and it cannot hold
a rate; wrk2 is not packaged. This sender schedules request ``k`` at
``start + k / rate`` whatever the answers do, and sends each on an idle
keep-alive connection of its pool (``connections`` of them), or queues it until
one is free, so a slow server shows as latency, not as fewer requests
(no coordinated omission).

Latency is measured from the moment the sender found the request due (its loop
woke at or after the scheduled time: timers have millisecond granularity, so
requests leave in small bursts), including any wait for a free connection, to
the last byte of the answer. The report also gives the latency from the
scheduled time (the wrk2 convention, which adds the sender's own lateness) and
how late the sender was, so a sender that could not keep up is visible: the
achieved rate must be the target rate.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import uvloop

from bench.targets import check_statuses


@dataclass
class Paced:
    target_rate: float
    sent: int = 0
    answered: int = 0
    seconds: float = 0.0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latency_ms: list[float] = field(default_factory=list)  # from due to answer
    from_schedule_ms: list[float] = field(default_factory=list)  # from scheduled time
    sender_late_ms: list[float] = field(default_factory=list)  # due minus scheduled
    queued: int = 0  # requests that waited for a free connection

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return self.percentile(self.latency_ms, 0.50)

    @property
    def p99_ms(self) -> float:
        return self.percentile(self.latency_ms, 0.99)

    def summary(self) -> str:
        return (
            f"target {self.target_rate:7.0f}/s achieved {self.rate:7.0f}/s"
            f"  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms"
            f"  (from schedule: p99 {self.percentile(self.from_schedule_ms, 0.99):6.2f} ms;"
            f" sender late p99 {self.percentile(self.sender_late_ms, 0.99):5.2f} ms;"
            f" queued {self.queued})"
        )


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self, done: collections.abc.Callable[[_Connection, int], None]) -> None:
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lost = asyncio.get_running_loop().create_future()
        self.scheduled = 0.0
        self.due = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def send(self, request: bytes, scheduled: float, due: float) -> None:
        assert self.transport is not None
        self.scheduled, self.due = scheduled, due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        self.done(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(exc)


def requests(host: str, port: int, pairs: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    """The raw HTTP requests, built before the clock starts."""
    return [
        b"POST /webhooks/voucherify HTTP/1.1\r\nHost: %s:%d\r\n"
        b"Content-Type: application/json\r\nx-voucherify-signature: %s\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, sig, len(body), body)
        for sig, body in pairs
    ]


async def _run(
    host: str, port: int, raw: list[bytes], rate: float, seconds: float, connections: int
) -> Paced:
    loop = asyncio.get_running_loop()
    result = Paced(rate)
    # Used in turn (first in, first out), so none stays idle long enough for the
    # server's keep-alive timeout; one the server closed anyway is replaced.
    idle: collections.deque[_Connection] = collections.deque()
    waiting: collections.deque[tuple[bytes, float, float]] = collections.deque()
    pool: list[_Connection] = []

    clock = time.perf_counter  # loop.time() of uvloop has millisecond resolution

    def answered(connection: _Connection, status: int) -> None:
        now = clock()
        result.answered += 1
        result.statuses[status] += 1
        result.latency_ms.append((now - connection.due) * 1e3)
        result.from_schedule_ms.append((now - connection.scheduled) * 1e3)
        if waiting:
            connection.send(*waiting.popleft())
        else:
            idle.append(connection)

    async def connect() -> None:
        _, protocol = await loop.create_connection(lambda: _Connection(answered), host, port)
        pool.append(protocol)
        idle.append(protocol)

    for _ in range(connections):
        await connect()
    replacements: set[asyncio.Task[None]] = set()

    total = int(rate * seconds)
    start = clock() + 0.01
    for k in range(total):
        scheduled = start + k / rate
        now = clock()
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
            now = clock()
        result.sender_late_ms.append((now - scheduled) * 1e3)
        request = raw[k % len(raw)]
        result.sent += 1
        while idle and idle[0].closed:
            idle.popleft()
            task = asyncio.create_task(connect())
            replacements.add(task)
            task.add_done_callback(replacements.discard)
        if idle:
            idle.popleft().send(request, scheduled, now)
        else:
            result.queued += 1
            waiting.append((request, scheduled, now))
    deadline = loop.time() + 30
    while result.answered < result.sent and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    result.seconds = max(clock(), start + total / rate) - start
    for connection in pool:
        assert connection.transport is not None
        if not connection.closed:
            connection.transport.close()
    return result


def run(
    url: str,
    pairs: Sequence[tuple[bytes, bytes]],
    rate: float,
    seconds: float,
    connections: int = 64,
) -> Paced:
    """Send ``rate`` requests per second for ``seconds`` to ``url`` (``http://host:port``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    raw = requests(host, int(port), pairs)
    result = uvloop.run(_run(host, int(port), raw, rate, seconds, connections))
    check_statuses(url, result.statuses)
    return result


def median_p99(results: Sequence[Paced]) -> float:
    return statistics.median(r.p99_ms for r in results)


if __name__ == "__main__":  # a quick manual check: python -m bench.paced URL CORPUS RATE
    import sys
    from pathlib import Path

    from bench import corpus

    started = time.monotonic()
    paced = run(sys.argv[1], corpus.read(Path(sys.argv[2])), float(sys.argv[3]), 5)
    print(paced.summary(), dict(paced.statuses))
