"""Raw HTTP/1.1 on a socket, for what a client library would tidy up: half heads, huge
heads, bodies that never come, connections that say nothing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

import httpx

from service.http.app import WEBHOOK_PATH


def webhook(body: bytes, headers: dict[str, str], *, close: bool = True) -> bytes:
    """A webhook POST with ``body`` and ``headers``, as bytes."""
    lines = [
        f"POST {WEBHOOK_PATH} HTTP/1.1",
        "host: 127.0.0.1",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
        *(["connection: close"] if close else []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status_of(answer: bytes) -> int:
    """The status of a raw answer; 0 when there is none."""
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def retransmitted(writer: asyncio.StreamWriter) -> int:
    """Segments the kernel sent again on this connection so far (Linux ``TCP_INFO``
    ``tcpi_total_retrans``), the SYN included: a SYN the server's host dropped (its
    listen queue full, or no listener) shows here as 1 or more, whatever the timing."""
    sock = writer.get_extra_info("socket")
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    total: int = struct.unpack_from("I", info, 100)[0]
    return total


async def exchange(
    port: int, request: bytes, *, retransmits: list[int] | None = None
) -> tuple[int, float, bytes]:
    """Send ``request`` on a new connection, read until the server closes it: the
    status, the seconds it took, the raw answer. With ``retransmits``, the segments
    the connect sent again (``retransmitted``) are appended to it."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if retransmits is not None:
        retransmits.append(retransmitted(writer))
    answer = b""
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                answer += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return status_of(answer), time.monotonic() - started, answer


async def cut_off(port: int, request: bytes, *, within: float) -> tuple[int, float, bytes]:
    """``exchange``, failing by assertion when the server has not closed the connection
    ``within`` seconds (rather than leaving the test to its timeout)."""
    try:
        return await asyncio.wait_for(exchange(port, request), within)
    except TimeoutError:
        raise AssertionError(
            f"the server did not close the connection within {within} s after {request[:60]!r}"
        ) from None


async def front_door_counts(base_url: str) -> dict[str, float]:
    """``fanout_front_door_total`` by reason, from the server's /metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{base_url}/metrics")).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("fanout_front_door_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts
