"""Drive the app as the sender does: a real server, signed posts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec

from service.config import Settings
from service.http import signature
from service.http.app import WEBHOOK_PATH, create_app
from tests.support.servers import FanoutProcess, running_uvicorn

SECRET = "test-secret-1"


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A real uvicorn serving the app, and an HTTP client pointed at it."""
    async with (
        running_uvicorn(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        yield client


def fanout_on(
    folder: Path, redis_url: str, prefix: str, *flags: str, **options: Any
) -> FanoutProcess:
    """``fanout serve`` as a child (not started) on ``redis_url`` under ``prefix``, with
    this module's secret and ``flags``; its log is ``folder / "fanout.log"``."""
    return FanoutProcess(
        folder / "fanout.log",
        f"--redis-url={redis_url}",
        f"--secrets={SECRET}",
        f"--stream-prefix={prefix}",
        *flags,
        **options,
    )


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "content-type": "application/json",
        signature.HEADER: signature.sign(body, secret.encode()),
    }


async def post(
    client: httpx.AsyncClient, payload: Any, *, secret: str = SECRET, **headers: str
) -> httpx.Response:
    """Sign and post like the sender: ``payload`` is bytes as-is, or an object to encode."""
    body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return await client.post(
        WEBHOOK_PATH, content=body, headers={**signed(body, secret), **headers}
    )


async def sent_twice(
    client: httpx.AsyncClient, body: bytes, again: bytes | None = None
) -> httpx.Response:
    """Post ``body``, then ``again`` (default: the same bytes), as a sender's retry: the
    first is published (202), the second answered as its duplicate (200, the first's id
    and entry id). The first answer."""
    first = await post(client, body)
    second = await post(client, body if again is None else again)
    assert first.status_code == 202, first.text
    assert second.status_code == 200, second.text
    assert second.json() == {
        "status": "duplicate",
        "id": first.json()["id"],
        "entry_id": first.json()["entry_id"],
    }
    return first


async def dead_lettered(
    response: httpx.Response, redis: Any, keys: Any, body: bytes, reason: str
) -> dict[str, str]:
    """Check the answer to an authentic body that cannot be published: 200
    ``dead_lettered`` naming the reason and its letter, which holds the body as sent
    and is the only letter of that body. The letter's fields, as text."""
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "dead_lettered"
    assert answer["reason"] == reason, answer
    letters = [
        (entry.decode(), {k.decode(): v for k, v in fields.items()})
        for entry, fields in await redis.xrange(keys.dead_letters())
    ]
    mine = [(entry, fields) for entry, fields in letters if fields["body"] == body]
    assert [entry for entry, _ in mine] == [answer["dead_letter"]], "one letter per body"
    [(_, fields)] = mine
    assert fields["reason"] == reason.encode()
    assert fields["detail"].decode() == answer["detail"]
    return {k: v.decode(errors="replace") for k, v in fields.items()}
