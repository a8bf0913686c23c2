"""The front door: what one connection may hold, enforced below the app, with no proxy.

uvicorn's httptools protocol sets no limit on the size of a request head, no
timeout for receiving it or the body, and keeps any number of connections open
(``limit_concurrency`` answers 503 at its cap but never closes an idle
connection to make room, so silent connections can hold every place).
``FrontDoorProtocol`` is that protocol with those limits added, passed to
uvicorn as ``http=``:

- a head (request line and headers) over ``max_head_bytes`` is answered 431 and
  the connection closed, checked after every read while it arrives (httptools
  would buffer it whole, by repeated concatenation);
- a head not complete ``head_timeout`` seconds after the connection opened (or,
  on a kept-alive connection, after its first byte) is answered 408, and a
  connection that sent nothing by then is closed;
- a body not complete ``body_timeout`` seconds after its head is answered 408;
- at ``max_connections`` open connections a new one closes the connection that
  has waited longest without a request being worked on (idle, or a head or body
  still arriving; answered 503 when it was mid-request), so a real delivery
  always gets in; only when every connection has a request in the app is the
  new one answered 503 and closed.

The keep-alive idle timeout and the listen backlog are uvicorn's own
(``timeout_keep_alive``, ``backlog``). ``FrontDoorConfig`` carries the limits
to the protocol, and (pickled) to every ``--workers`` process; each worker
keeps its own count and cap.

The limits, sized to the process's file limit, are made in
``front_door_limits.py`` (``limits_for``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .. import metrics

# Re-exported: the CLI, the dashboard, tests and bench name them ``front_door.<name>``.
from .front_door_limits import OWN_FILES as OWN_FILES
from .front_door_limits import Limits as Limits
from .front_door_limits import describe as describe
from .front_door_limits import limits_for as limits_for
from .front_door_limits import raise_file_limit as raise_file_limit

#: Phases of a connection: waiting for a request or receiving its head (new or
#: kept alive), receiving its body, and the request in the app (not to be shed).
WAIT, BODY, BUSY = range(3)


def _answer(status: bytes, body: bytes, *headers: bytes) -> bytes:
    head = [
        b"HTTP/1.1 " + status,
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


HEAD_TOO_LARGE = _answer(
    b"431 Request Header Fields Too Large", b'{"error":"request_head_too_large"}'
)
TIMED_OUT = _answer(b"408 Request Timeout", b'{"error":"request_timeout"}')
TOO_MANY = _answer(
    b"503 Service Unavailable",
    b'{"error":"unavailable","detail":"too many open connections"}',
    b"retry-after: 1",
)


class Door:
    """The connections of one server in this process: how many are open, which wait.

    Waiting connections are kept in three ordered dicts by the time they started
    waiting (so oldest first): ``heads`` (nothing or part of a head received),
    ``bodies`` (a head received, its body not yet), ``idle`` (kept alive after an
    answer; uvicorn's keep-alive timer closes them). A head or body past its
    timeout is found by one timer per server that looks only at the front of
    ``heads`` and ``bodies``, rather than a timer per connection (which cost
    about 3 us per connection in ``bench/front_door.py``).
    """

    __slots__ = ("bodies", "heads", "idle", "limits", "open", "sweeping")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open = 0
        self.heads: OrderedDict[FrontDoorProtocol, float] = OrderedDict()
        self.bodies: OrderedDict[FrontDoorProtocol, float] = OrderedDict()
        self.idle: OrderedDict[FrontDoorProtocol, float] = OrderedDict()
        self.sweeping = False

    def admit(self) -> bool:
        """Count a new connection in; at the cap, shed the longest waiting one.

        Runs as uvloop accepts the connection (it builds the protocol at once,
        ``connection_made`` comes a loop turn later), so a burst of accepts
        sheds one connection each before the next turn accepts again.
        """
        self.open += 1
        if self.open <= self.limits.max_connections:
            return True
        oldest: FrontDoorProtocol | None = None
        since = float("inf")
        for waiting in (self.idle, self.heads, self.bodies):
            if waiting:
                first, started = next(iter(waiting.items()))
                if started < since:
                    oldest, since = first, started
        if oldest is None:
            return False
        oldest.shed()
        return True

    def sweep_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Look for heads and bodies past their timeout every tenth of the shorter one."""
        if not self.sweeping:
            self.sweeping = True
            loop.call_later(self._every(), self._sweep, loop)

    def _every(self) -> float:
        return min(1.0, max(0.05, min(self.limits.head_timeout, self.limits.body_timeout) / 10))

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for waiting, timeout in (
            (self.heads, self.limits.head_timeout),
            (self.bodies, self.limits.body_timeout),
        ):
            while waiting:
                first, started = next(iter(waiting.items()))
                if now - started < timeout:
                    break
                first.timed_out()  # takes itself out of ``waiting``
        if self.heads or self.bodies:
            loop.call_later(self._every(), self._sweep, loop)
        else:
            self.sweeping = False


class FrontDoorConfig(uvicorn.Config):
    """uvicorn's ``Config`` with the front door's limits; the protocol is ours."""

    def __init__(
        self, app: Any, *, limits: Limits, one_write: str | None = None, **options: Any
    ) -> None:
        super().__init__(
            app,
            http=FrontDoorProtocol,
            timeout_keep_alive=limits.keep_alive_timeout,
            backlog=limits.backlog,
            **options,
        )
        self.limits = limits
        #: The path whose answers go out in one write (``OneWrite``): the webhook's.
        self.one_write = one_write
        #: Made in the serving process at its first connection; never pickled.
        self.door: Door | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "door": None}


async def _head_too_large(scope: Any, receive: Any, send: Any) -> None:
    """The answer to a head found over the limit only once complete (read in one go)."""
    body = b'{"error":"request_head_too_large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: Calls to the base protocol name it: ``super()`` builds an object per call on
#: Python 3.11; on this path (five calls per request) that cost about 1 us per
#: request (median of 21 paired runs of bench/front_door.py's two loads).
_Base = HttpToolsProtocol


class OneWrite:
    """A connection's transport as one response cycle sees it: the first write (uvicorn
    writes the status line and headers on their own) is held and goes out with the
    next (the body), so an answer is one system call and one TCP segment, not two.

    For answers sent whole (start, then the one body message), as the webhook
    receiver's are; anything else the cycle asks of the transport writes the held
    head out first. Measured (issue 29, a CPython prototype of the webhook on this
    stack): 1.09-1.12x the deliveries per second.
    """

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None  # None: nothing written yet; b"": written out

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None:
            self._head = data
            return
        if head:
            self._head = b""
            data = head + data
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        if self._head:
            self._transport.write(self._head)
            self._head = b""
        return getattr(self._transport, name)


class FrontDoorProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head size limit, head and body timeouts and
    a connection cap that sheds waiting connections first (see the module)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        _Base.__init__(self, config, server_state, app_state, _loop)
        assert isinstance(config, FrontDoorConfig), "FrontDoorProtocol needs a FrontDoorConfig"
        door = config.door
        if door is None:
            door = config.door = Door(config.limits)
        self._door = door
        self._max_head_bytes = door.limits.max_head_bytes
        #: WAIT (nothing or part of a head: ``_head_bytes`` says), BODY or BUSY.
        self._phase = WAIT
        self._head_bytes = 0
        self._chunk = 0
        #: The one of the door's dicts this connection waits in, if any.
        self._where: OrderedDict[FrontDoorProtocol, float] | None = None
        self._admitted = door.admit()
        self._one_write = config.one_write

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _Base.connection_made(self, transport)
        if not self._admitted:
            metrics.front_door("refused")
            self._phase = BUSY
            transport.write(TOO_MANY)
            transport.close()
            return
        door = self._door
        self._where = door.heads
        door.heads[self] = self.loop.time()
        door.sweep_soon(self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        self._door.open -= 1
        if self._where is not None:
            self._where.pop(self, None)
            self._where = None
        _Base.connection_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        self._chunk = len(data)
        _Base.data_received(self, data)
        phase = self._phase
        if phase == BUSY:
            return
        door = self._door
        if phase == BODY:
            if not self.cycle.more_body:  # the whole request is in: the app has it
                self._phase = BUSY
                if self._where is not None:
                    del self._where[self]
                    self._where = None
            elif self._where is None:  # the head came in this read; its body has yet to
                self._where = door.bodies
                door.bodies[self] = self.loop.time()
                door.sweep_soon(self.loop)
            return
        # WAIT: the head is still incomplete after this read.
        self._head_bytes += len(data)
        if self._head_bytes > self._max_head_bytes:
            metrics.front_door("head_too_large")
            self._close_with(HEAD_TOO_LARGE)
        elif self._where is not door.heads:
            # Kept alive: idle until now, and a head started coming; its time starts now.
            if self._where is not None:
                del self._where[self]
            self._where = door.heads
            door.heads[self] = self.loop.time()
            door.sweep_soon(self.loop)

    # Parser callback: the head is complete (the body's end is seen in data_received:
    # uvicorn's on_message_complete clears the cycle's more_body)

    def on_headers_complete(self) -> None:
        if self._where is not None:
            del self._where[self]
            self._where = None
        self._phase = BODY
        limit = self._max_head_bytes
        if self._head_bytes + self._chunk > limit and self._head_size() > limit:
            # The rest of an oversized head came in this read: answer 431 instead of the app.
            metrics.front_door("head_too_large")
            app, self.app = self.app, _head_too_large
            try:
                _Base.on_headers_complete(self)
            finally:
                self.app = app
            return
        _Base.on_headers_complete(self)
        if (
            self.scope["path"] == self._one_write
            and self.cycle is not None
            and not self.expect_100_continue  # "100 Continue" is a write of its own
        ):
            self.cycle.transport = OneWrite(self.transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        _Base.on_response_complete(self)
        # Kept alive with nothing pipelined: idle (uvicorn's keep-alive timer runs).
        if self._phase == BUSY and not self.pipeline and not self.transport.is_closing():
            self._phase = WAIT
            self._head_bytes = 0
            self._where = self._door.idle
            self._door.idle[self] = self.loop.time()

    # Cutting a connection off

    def _head_size(self) -> int:
        """The head's size from what the parser gave (request line and header lines)."""
        size = len(self.url) + 14  # method, spaces, HTTP/1.1, CRLF, final CRLF
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        return size

    def _answered(self) -> bool:
        return self.cycle is not None and self.cycle.response_started

    def timed_out(self) -> None:
        """Its head or body took too long: 408 when a request was arriving."""
        if self._phase == BODY:
            metrics.front_door("body_timeout")
            self._close_with(b"" if self._answered() else TIMED_OUT)
        else:
            metrics.front_door("head_timeout")
            self._close_with(TIMED_OUT if self._head_bytes else b"")

    def shed(self) -> None:
        """Close to make room at the cap: 503 when a request was arriving."""
        metrics.front_door("shed")
        mid_request = not self._answered() if self._phase == BODY else self._head_bytes > 0
        self._close_with(TOO_MANY if mid_request else b"")

    def _close_with(self, answer: bytes) -> None:
        self._phase = BUSY
        if self._where is not None:
            self._where.pop(self, None)
            self._where = None
        if self.transport.is_closing():
            return
        if answer:
            self.transport.write(answer)
        self.transport.close()
