"""The receiver's own cost per delivery, in process: the ASGI app called directly.

    python -m bench.inprocess [--redis redis://127.0.0.1:6379/0] [--deliveries 6000]

No HTTP server and no sockets on the sender's side: each delivery is one call of
the webhook route's ASGI app (``Receiver``) with a scope, a ``receive`` that hands
over the signed body and a ``send`` that keeps the answer, against a real Redis
(``--redis``, else an embedded Valkey started here). Deliveries go in waves of
``--concurrency`` at once, so the group commit batches them as under load; the
figure is this process's CPU time (``time.process_time``) per delivery: what the
receiver spends in Python, verify, decode, event, script call and answer, without
the server's parsing of HTTP. Bodies are the mixed load of ``bench.corpus``
(unique, two async actions to one envelope), under a fresh key prefix each pass;
the best of ``--repeat`` passes is reported. Compare two trees with
``PYTHONPATH=<tree> python -m bench.inprocess``, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import corpus
from service.config import Durability, Secret, Settings
from service.http import signature
from service.http.receiver import Receiver
from service.streams import connection
from service.streams.publisher import Publisher

PATH = "/webhooks/voucherify"


def _scope(body: bytes, signed: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "client": ("127.0.0.1", 40000),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"x-voucherify-signature", signed),
        ],
    }


async def _deliver(app: Receiver, scope: dict[str, Any], body: bytes) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def one_pass(url: str, lines: list[tuple[bytes, bytes]], concurrency: int) -> float:
    """CPU microseconds per delivery of one pass over ``lines`` under a fresh prefix."""
    prefix = f"bench-inproc-{secrets.token_hex(4)}"
    settings = Settings(
        redis_url=url,
        secrets=(Secret(corpus.SECRET.decode()),),
        stream_prefix=prefix,
        durability=Durability("none"),
    )
    client = connection.from_settings(settings)
    try:
        app = Receiver(settings, Publisher.from_settings(client, settings))
        await _deliver(app, _scope(*lines[0][::-1]), lines[0][1])  # loads the scripts
        scopes = [(_scope(body, signed), body) for signed, body in lines]
        started = time.process_time()
        for start in range(0, len(scopes), concurrency):
            wave = scopes[start : start + concurrency]
            answers = await asyncio.gather(*(_deliver(app, s, b) for s, b in wave))
            assert set(answers) <= {200, 202}, answers
        spent = time.process_time() - started
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()
    return spent / len(scopes) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", help="Redis URL (default: an embedded Valkey)")
    parser.add_argument("--deliveries", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bodies = corpus.mixed(args.deliveries)
    lines = [(signature.sign(body, corpus.SECRET).encode(), body) for body in bodies]
    with tempfile.TemporaryDirectory() as folder:
        url = args.redis
        server = None
        if url is None:
            from service.streams.embedded import EmbeddedValkey

            server = EmbeddedValkey(Path(folder))
            url = server.start()
        try:
            best = min(
                asyncio.run(one_pass(url, lines, args.concurrency)) for _ in range(args.repeat)
            )
        finally:
            if server is not None:
                server.stop()
    print(
        f"{len(lines)} deliveries (mixed), {args.concurrency} at once: "
        f"{best:.1f} us of CPU per delivery in process (best of {args.repeat})"
    )


if __name__ == "__main__":
    main()
