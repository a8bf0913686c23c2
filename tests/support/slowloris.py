"""A slowloris in its own process: holds N connections that each sent half a request head.

    python -m tests.support.slowloris PORT COUNT SECONDS [--reopen]

Opens COUNT connections to 127.0.0.1:PORT, sends half of a webhook request's
head on each and waits. With ``--reopen``, a connection the server closes is
opened again at once, so COUNT are held (or being opened) for SECONDS. Then it
waits up to 30 s more for the server to close what is left. Prints one JSON object:
``opened``, ``lifetimes`` (seconds from open to the server's close, one per
connection it closed), ``still_open`` (never closed by the server), ``failed``
(connects that failed: refused or reset before they were up).

Its own process, so its 1,500 sockets and its event loop neither need the
test's file limit nor slow the test's own senders; it raises its soft file
limit to the hard one.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

HALF_HEAD = (
    b"POST /webhooks/voucherify HTTP/1.1\r\n"
    b"host: 127.0.0.1\r\n"
    b"content-type: application/json\r\n"
    b"content-len"
)


async def main(port: int, count: int, seconds: float, reopen: bool) -> dict[str, object]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lifetimes: list[float] = []
    failed = 0
    opened = 0
    open_now: set[asyncio.StreamWriter] = set()
    stop_at = time.monotonic() + seconds

    async def hold() -> None:
        nonlocal failed, opened
        while time.monotonic() < stop_at:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                failed += 1
                await asyncio.sleep(0.05)
                continue
            opened += 1
            started = time.monotonic()
            open_now.add(writer)
            try:
                writer.write(HALF_HEAD)
                # Whatever the server answers (a 408 or 503, or nothing), then its close.
                while await reader.read(65536):
                    pass
            except OSError:
                pass
            lifetimes.append(time.monotonic() - started)
            open_now.discard(writer)
            writer.close()
            if not reopen:
                return

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    await asyncio.wait(tasks, timeout=seconds)
    # No more reopening from here; give the server up to 30 s to close the rest.
    await asyncio.wait(tasks, timeout=30)
    still_open = len(open_now)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for writer in list(open_now):
        writer.close()
    return {"opened": opened, "lifetimes": lifetimes, "still_open": still_open, "failed": failed}


if __name__ == "__main__":
    port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    reopen = "--reopen" in sys.argv[4:]
    print(json.dumps(asyncio.run(main(port, count, seconds, reopen))), flush=True)
