"""TCP proxies for network faults, each on an event loop of its own thread (so set-up code,
sync or async, can start one and the test's loop does not carry its traffic).

``DelayProxy(port, delay=0.05)``: everything passes, ``delay`` seconds late in each
direction: a replica behind it lags its master by that much (replication stream one
way, its acknowledgements the other). ``kill()`` closes every socket at once and drops
what it still holds: with the master killed at the same moment, what the replica
had not received is gone, as in a crash of the master's host (a kill -9 of a process
alone leaves its socket buffers to be delivered).

``hold()`` / ``release()``: a black hole for a while; nothing passes (nothing is
refused or closed either, as when a network drops packets), then what was held flows
on. With ``hole_from`` only the connections from that address fall into it: the
receiver's (127.0.0.1), while Sentinel and the replicas, given another source
address (``bind-source-addr 127.0.0.2``), still reach the server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time

from tests.support.servers import HOST


class DelayProxy:
    def __init__(
        self, target_port: int, *, delay: float = 0.0, hole_from: str | None = None
    ) -> None:
        self.target_port = target_port
        self.delay = delay
        self.hole_from = hole_from
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self.killed = False

    def start(self) -> int:
        """Listen on a free port (returned) and forward to ``target_port``."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self.port

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def hold(self) -> None:
        """Nothing passes from now on, in either direction, until ``release()``."""
        assert self._flowing is not None and self._loop is not None
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def release(self) -> None:
        assert self._flowing is not None and self._loop is not None
        self._loop.call_soon_threadsafe(self._flowing.set)

    def kill(self) -> None:
        """Close every socket now, dropping what is held; no new connection is accepted."""
        if self.killed or self._loop is None or self._thread is None:
            return
        self.killed = True

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()  # no flush: what the proxy holds is lost
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.killed:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        peer = client_w.get_extra_info("peername")[0]
        held = self.hole_from is None or peer == self.hole_from
        pipes = [
            asyncio.create_task(self._pipe(client_r, server_w, held)),
            asyncio.create_task(self._pipe(server_r, client_w, held)),
        ]
        # Cancelled by kill(): end quietly (asyncio's stream callback logs a handler
        # that ends cancelled as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
        for writer in (client_w, server_w):
            writer.transport.abort()
            self._writers.discard(writer)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held_back: bool
    ) -> None:
        """Forward each chunk ``delay`` seconds after it arrived, in order (not while held,
        if ``held_back``)."""
        held: collections.deque[tuple[float, bytes]] = collections.deque()
        arrived = asyncio.Event()
        done = False

        async def read() -> None:
            nonlocal done
            with contextlib.suppress(OSError):
                while chunk := await reader.read(65536):
                    held.append((time.monotonic() + self.delay, chunk))
                    arrived.set()
            done = True
            arrived.set()

        reading = asyncio.create_task(read())
        assert self._flowing is not None
        try:
            while True:
                if not held:
                    if done:
                        return
                    arrived.clear()
                    await arrived.wait()
                    continue
                due, chunk = held[0]
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if held_back:
                    await self._flowing.wait()
                held.popleft()
                writer.write(chunk)
                with contextlib.suppress(OSError):
                    await writer.drain()
        finally:
            reading.cancel()
