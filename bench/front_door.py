"""What the front door costs per request: uvicorn's httptools protocol against ours.

    python -m bench.front_door [--requests 5000] [--runs 5]

Both protocols serve the same minimal ASGI app (reads the body, answers 202)
in a uvloop loop, fed a signed-size request straight through
``data_received`` (no socket: the kernel's share is the same for both and only
adds noise); one request per connection (as Voucherify sends them, so the
cap's bookkeeping is paid every time) and many requests on one kept-alive
connection. The two alternate in short runs and the CPU time of each run is
measured; the median of the paired differences is the front door's own cost
per request, to set against the service's CPU per delivery (``make bench``:
``cpu/req``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.config import Settings
from service.domain import samples
from service.http import front_door

BODY = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))
ANSWER = b'{"status":"accepted"}'


def request(close: bool) -> bytes:
    head = [
        b"POST /webhooks/voucherify HTTP/1.1",
        b"host: 127.0.0.1:8000",
        b"user-agent: Voucherify",
        b"content-type: application/json",
        b"content-length: " + str(len(BODY)).encode(),
        b"x-voucherify-signature: " + b"0" * 64,
        *([b"connection: close"] if close else []),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + BODY


async def app(scope: Any, receive: Any, send: Any) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(ANSWER)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


def factory(name: str) -> Callable[[], Any]:
    """A protocol factory as uvicorn's server makes it, for one of the two protocols."""
    state = ServerState()
    if name == "uvicorn":
        config = uvicorn.Config(app, lifespan="off", http="httptools", log_level="warning")
        config.load()
        return lambda: HttpToolsProtocol(config=config, server_state=state, app_state={})
    limits, _ = front_door.limits_for(Settings(), 1 << 16)
    door_config = front_door.FrontDoorConfig(
        app, limits=limits, lifespan="off", log_level="warning"
    )
    door_config.load()
    return lambda: front_door.FrontDoorProtocol(
        config=door_config, server_state=state, app_state={}
    )


class Transport(asyncio.Transport):
    """The transport a protocol writes to: keeps nothing, tells when the answer is out.

    No socket: what is measured is the protocols' own work, not the kernel's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.answered = asyncio.Event()
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data).endswith(ANSWER):
            self.answered.set()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def one_per_connection(make: Callable[[], Any], requests: int) -> None:
    data = request(close=True)
    for _ in range(requests):
        transport = Transport()
        transport.protocol = protocol = make()
        protocol.connection_made(transport)
        protocol.data_received(data)
        await transport.answered.wait()
        await asyncio.sleep(0)  # connection_lost


async def kept_alive(make: Callable[[], Any], requests: int) -> None:
    data = request(close=False)
    transport = Transport()
    transport.protocol = protocol = make()
    protocol.connection_made(transport)
    for _ in range(requests):
        transport.answered.clear()
        protocol.data_received(data)
        await transport.answered.wait()
    transport.close()
    await asyncio.sleep(0)


def cpu_us(name: str, mode: str, requests: int) -> float:
    run = one_per_connection if mode == "one per connection" else kept_alive

    async def main() -> float:
        make = factory(name)
        await run(make, 200)  # warm-up
        started = time.process_time()
        await run(make, requests)
        return (time.process_time() - started) / requests * 1e6

    return uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    for mode in ("one per connection", "kept alive"):
        results: dict[str, list[float]] = {"uvicorn": [], "front door": []}
        for run in range(args.runs):
            names = list(results) if run % 2 == 0 else list(reversed(results))
            for name in names:
                results[name].append(cpu_us(name, mode, args.requests))
        base = statistics.median(results["uvicorn"])
        ours = statistics.median(results["front door"])
        paired = [b - a for a, b in zip(results["uvicorn"], results["front door"], strict=True)]
        quartiles = statistics.quantiles(paired, n=4)
        print(
            f"{mode:<19} uvicorn {base:5.1f} us/request, front door {ours:5.1f} us/request; "
            f"paired difference: median {statistics.median(paired):+.1f} us "
            f"(quartiles {quartiles[0]:+.1f} to {quartiles[2]:+.1f}) over {len(paired)} runs"
        )


if __name__ == "__main__":
    main()
