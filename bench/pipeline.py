"""Group commit's hand-packed RESP path against redis-py's own pipeline, both with EVALSHA.

    python -m bench.pipeline [redis://127.0.0.1:6379/1]

Each round sends a batch of COMPLETE_LUA calls (new keys, a real event JSON as
the payload) in one round trip, the way ``GroupCommit`` does: once packed by
hand and exchanged on a pooled connection (``GroupCommit._exchange``), once
through ``redis.pipeline(transaction=False)`` with ``evalsha`` and
``execute(raise_on_error=False)``. Prints calls per second of both and the
ratio; the keys it wrote are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis

from service.domain import actions, completion, samples
from service.streams.group_commit import GroupCommit, pack
from service.streams.keys import Keys
from service.streams.records import Records, field
from service.streams.scripts import COMPLETE_LUA

CALLS = 20_000
BATCHES = (1, 16, 64, 256)


def _calls(keys: Keys, count: int) -> list[tuple[tuple[str, ...], tuple[Any, ...]]]:
    action = actions.decode(msgspec.json.encode(samples.sample("VOUCHERS.IMPORT")))
    event = completion.encode_event(completion.from_action(action, datetime.now(UTC)))
    out = []
    type_ = "VOUCHERS.IMPORT"
    buckets = Records(keys, 604_800).buckets(type_)
    for n in range(count):
        id_ = f"aa_{n}"
        fields = ("type", type_, "status", "DONE", "id", id_, "request_id", "r", "event", event)
        legacy = (keys.seen(type_, id_, "r"), keys.done(type_, id_))
        records = (field("seen", id_, "r"), field("done", id_))
        out.append(
            (
                (keys.completed(type_), *legacy, *buckets),
                ("digest", 1_000_000, 0, *records, *fields),
            )
        )
    return out


async def hand_packed(redis: Redis, sha: str, calls: list[Any], batch: int) -> float:
    commit = GroupCommit(redis, timeout=30.0)
    started = time.perf_counter()
    for start in range(0, len(calls), batch):
        chunk = calls[start : start + batch]
        payload = b"".join(pack(("EVALSHA", sha, len(k), *k, *a)) for k, a in chunk)
        await commit._exchange(payload, len(chunk))
    return len(calls) / (time.perf_counter() - started)


async def pipelined(redis: Redis, sha: str, calls: list[Any], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(calls), batch):
        async with redis.pipeline(transaction=False) as pipe:
            for k, a in calls[start : start + batch]:
                pipe.evalsha(sha, len(k), *k, *a)
            await pipe.execute(raise_on_error=False)
    return len(calls) / (time.perf_counter() - started)


async def main(url: str) -> None:
    redis = Redis.from_url(url)
    sha = await redis.script_load(COMPLETE_LUA)
    print(f"{CALLS} EVALSHA calls of COMPLETE_LUA per run, {url}")
    print(f"{'batch':>6} {'hand-packed/s':>14} {'pipeline/s':>12} {'ratio':>7}")
    try:
        for batch in BATCHES:
            best: dict[str, float] = {"hand": 0.0, "pipe": 0.0}
            for _ in range(3):  # best of three, alternating, against noise
                for name, run in (("hand", hand_packed), ("pipe", pipelined)):
                    keys = Keys(f"bench-{uuid.uuid4().hex[:8]}")
                    rate = await run(redis, sha, _calls(keys, CALLS), batch)
                    best[name] = max(best[name], rate)
                    async for key in redis.scan_iter(match=keys.all_pattern(), count=1000):
                        await redis.delete(key)
            ratio = best["hand"] / best["pipe"]
            print(f"{batch:>6} {best['hand']:>14,.0f} {best['pipe']:>12,.0f} {ratio:>6.2f}x")
    finally:
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/1"))
