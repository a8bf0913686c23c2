"""On a server with a small maxmemory, under every maxmemory-policy (issue 21).

Before, on Redis 7.0: ``volatile-lru`` (the managed-Redis default) evicted the
dedup keys, the only keys with a TTL, and 966 of 1,000 resends were published
twice; ``allkeys-lru`` lost 23,155 of 40,000 acknowledged deliveries with
``/readyz`` 200 throughout. Now: fill until the deliveries are refused (503),
resend what was acknowledged, raise the limit, resend again: 0 lost and 0
published twice, or start-up refused in one line.

Other tenants' keys with a TTL share the server, so the volatile policies have
something to evict, as on a real shared instance; none of ours is a candidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import msgspec
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from service.config import Settings
from service.domain import samples
from service.http.app import WEBHOOK_PATH, create_app
from service.reconciler.lease import Lease
from service.streams import refusals
from service.streams import server as server_check
from service.streams.keys import Keys
from service.streams.publisher import Publisher
from service.streams.server import ServerRefused
from tests.support.http import post, serving, signed
from tests.support.load import Connection
from tests.support.servers import ValkeyProcess, free_port, has_binary, running_uvicorn

TYPE = "ORDERS.IMPORT"
BINARIES = [
    pytest.param("redis", marks=pytest.mark.skipif(not has_binary("redis"), reason="no redis")),
    "valkey",
]
POLICIES = ["noeviction", "volatile-lru", "volatile-lfu", "volatile-ttl", "volatile-random"]
#: Above what the server holds before the fill: room for about 600 deliveries.
HEADROOM = 800_000


async def small_server(tmp_path: Path, binary: str, policy: str) -> tuple[ValkeyProcess, int]:
    server = ValkeyProcess(tmp_path / binary, binary=binary, extra=["--maxmemory-policy", policy])
    server.start()
    client = Redis.from_url(server.url)
    try:
        # Another tenant's cache: keys with a TTL, the candidates of a volatile policy.
        async with client.pipeline(transaction=False) as pipe:
            for n in range(300):
                pipe.set(f"cache:{n}", b"x" * 1000, ex=3600)
            await pipe.execute()
        used = int((await client.info("memory"))["used_memory"])
        limit = used + HEADROOM
        await client.config_set("maxmemory", limit)
    finally:
        await client.aclose()
    return server, limit


class Sender:
    """Posts signed bodies over 16 keep-alive connections, once each (httpx is too slow
    to fill a server in a test: ~5 ms a request here)."""

    def __init__(self, base_url: str) -> None:
        url = httpx.URL(base_url)
        assert url.port is not None
        self._pool = [Connection(url.host, url.port) for _ in range(16)]

    async def deliver(self, bodies: list[dict[str, object]]) -> list[int]:
        answers: list[int] = [0] * len(bodies)

        async def send(connection: Connection, start: int) -> None:
            for n in range(start, len(bodies), len(self._pool)):
                raw = msgspec.json.encode(bodies[n])
                answers[n] = (await connection.post(WEBHOOK_PATH, raw, signed(raw))).status_code

        await asyncio.gather(*(send(c, n) for n, c in enumerate(self._pool)))
        return answers

    async def close(self) -> None:
        for connection in self._pool:
            await connection.close()


def body(n: int) -> dict[str, object]:
    return samples.sample(TYPE, id_=f"aa_{n:08d}", request_id=f"v-{n:08d}")


@pytest.mark.spawns
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("binary", BINARIES)
async def test_full_server_refuses_then_keeps_every_acknowledged_delivery_once(
    settings: Settings, tmp_path: Path, binary: str, policy: str
) -> None:
    server, limit = await small_server(tmp_path, binary, policy)
    own = dataclasses.replace(settings, redis_url=server.url, durability=settings.durability)
    keys = Keys(own.stream_prefix)
    client = Redis.from_url(server.url)
    try:
        acknowledged: list[int] = []
        refused = n = 0
        async with running_uvicorn(create_app(own)) as base_url:
            sender = Sender(base_url)
            async with httpx.AsyncClient(base_url=base_url) as http:
                while refused < 64 and n < 20_000:  # fill until the deliveries are refused
                    answers = await sender.deliver([body(i) for i in range(n, n + 64)])
                    acknowledged += [n + i for i, status in enumerate(answers) if status == 202]
                    assert set(answers) <= {202, 503}
                    refused += answers.count(503)
                    n += 64
                ready_when_full = (await http.get("/readyz")).status_code
                resent = await sender.deliver([body(i) for i in acknowledged[:300]])
                await client.config_set("maxmemory", limit * 4)
                await asyncio.sleep(1.2)  # the memory sampler sees the new limit
                again = await sender.deliver([body(i) for i in acknowledged])
                ready_after = (await http.get("/readyz")).status_code
            await sender.close()
        stored = Counter(
            fields[b"id"].decode() for _, fields in await client.xrange(keys.completed(TYPE))
        )
        evicted = int((await client.info("stats"))["evicted_keys"])
    finally:
        await client.aclose()
        server.stop()
    ids = {f"aa_{i:08d}" for i in acknowledged}
    lost = len(ids - set(stored))
    twice = sum(count > 1 for count in stored.values()) + resent.count(202) + again.count(202)
    print(
        f"\n{binary} {policy}: {len(acknowledged)} acknowledged, {refused} x 503 while full, "
        f"lost {lost}, published twice {twice}, other keys evicted {evicted}"
    )
    assert len(acknowledged) > 100 and refused >= 64
    assert ready_when_full == 503
    assert set(resent) <= {200, 503}  # a duplicate, or refused while full: never a new 202
    assert again == [200] * len(acknowledged) and ready_after == 200
    assert (lost, twice) == (0, 0)


@pytest.mark.spawns
@pytest.mark.parametrize("binary", BINARIES)
async def test_an_evicting_policy_is_refused_at_start_up_in_one_line(
    settings: Settings, tmp_path: Path, binary: str
) -> None:
    server = ValkeyProcess(
        tmp_path / binary, binary=binary, extra=["--maxmemory-policy", "allkeys-lru"]
    )
    server.start()
    client = Redis.from_url(server.url)
    try:
        publisher = Publisher.from_settings(client, settings)
        with pytest.raises(ServerRefused) as refused:
            await publisher.check_server(allow_eviction=False)
        line = str(refused.value)
        assert line.startswith("maxmemory-policy: the Redis server runs allkeys-lru")
        assert "noeviction or volatile-lru" in line and "FANOUT_ALLOW_EVICTION=1" in line
        assert "\n" not in line
        memory = await publisher.check_server(allow_eviction=True)
        assert memory is not None and memory[1] and "entries may be lost" in memory[0]
    finally:
        await client.aclose()
        server.stop()


FANOUT = str(Path(sys.executable).parent / "fanout")


def serve_exits(tmp_path: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    return subprocess.run(
        [FANOUT, "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=clean | {"FANOUT_REDIS_URL": url, "FANOUT_SECRETS": "s"} | env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.spawns
def test_fanout_serve_on_an_evicting_policy_exits_2_with_one_line(tmp_path: Path) -> None:
    with ValkeyProcess(tmp_path / "v", extra=["--maxmemory-policy", "allkeys-lfu"]) as server:
        result = serve_exits(tmp_path, server.url)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "fanout: configuration error: maxmemory-policy: the Redis server runs allkeys-lfu"
    )


@pytest.mark.spawns
@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("noauth", "wants a password and the URL gives none (NOAUTH)"),
        ("wrongpass", "refused the user and password in the URL (WRONGPASS)"),
        ("noperm", "lacks a permission the service needs (NOPERM"),
    ],
)
def test_fanout_serve_names_an_access_fault_and_exits_2(
    tmp_path: Path, case: str, says: str
) -> None:
    with ValkeyProcess(tmp_path / "v", extra=["--requirepass", "pw"]) as server:
        admin = SyncRedis(host="127.0.0.1", port=server.port, password="pw")
        admin.execute_command("ACL", "SETUSER", "u", "on", ">p", "~*", "-@all", "+ping")
        admin.close()
        url = {
            "noauth": server.url,
            "wrongpass": f"redis://:nope@127.0.0.1:{server.port}",
            "noperm": f"redis://u:p@127.0.0.1:{server.port}",
        }[case]
        result = serve_exits(tmp_path, url)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("fanout: configuration error: FANOUT_REDIS_URL: the Redis ")
    assert says in line


@pytest.mark.spawns
@pytest.mark.skipif(not has_binary("redis"), reason="no redis-server on PATH")
async def test_protected_mode_is_named_as_what_it_is(tmp_path: Path) -> None:
    # Redis 7.0 in protected mode answers DENIED to a client from any address but
    # 127.0.0.1; a proxy connecting from 127.0.0.2 plays the other host. Before, start-up
    # said "refused WAITAOF ... it needs Redis >= 7.2", and a container looped on it.
    extra = ["--bind", "127.0.0.1 127.0.0.2", "--protected-mode", "yes"]
    with ValkeyProcess(tmp_path / "r", binary="redis", extra=extra) as server:

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_r, up_w = await asyncio.open_connection(
                "127.0.0.2", server.port, local_addr=("127.0.0.2", 0)
            )

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(OSError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

        proxy = await asyncio.start_server(forward, "127.0.0.1", 0)
        port = proxy.sockets[0].getsockname()[1]
        client = Redis(host="127.0.0.1", port=port)
        try:
            with pytest.raises(ServerRefused) as refused:
                await server_check.inspect(client, 2.0)
        finally:
            await client.aclose()
            proxy.close()
    line = str(refused.value)
    assert line.startswith("FANOUT_REDIS_URL: the Redis server is in protected mode")
    assert "(DENIED)" in line and "requirepass" in line and "\n" not in line


async def test_refusal_counters_carry_no_ttl_and_old_minutes_are_deleted(
    redis: Redis, keys: Keys
) -> None:
    now = time.time()
    stale = keys.refusals(int(now // 60) - refusals.KEEP_SECONDS // 60 - 5)
    await redis.hset(stale, "invalid_signature", 3)  # left by an earlier process
    counts = refusals.Refusals(redis, keys)
    counts.count("invalid_signature", now)
    await counts.flush()
    current = keys.refusals(int(now // 60))
    assert await redis.hget(current, "invalid_signature") == b"1"
    assert await redis.ttl(current) == -1
    assert not await redis.exists(stale)


async def test_the_reconciler_lease_keeps_its_expiry_in_its_value(redis: Redis, keys: Keys) -> None:
    first = Lease(redis, keys.poll_lease(), ttl=0.4)
    second = Lease(redis, keys.poll_lease(), ttl=0.4)
    assert await first.try_acquire()
    assert await redis.ttl(keys.poll_lease()) == -1  # nothing for a volatile policy to evict
    assert not await second.try_acquire()
    await asyncio.sleep(0.5)  # first stopped renewing: expired by the server's clock
    assert await second.try_acquire()
    assert not await first.try_acquire()
    await second.release()
    assert not await redis.exists(keys.poll_lease())


@pytest.mark.spawns
async def test_retention_trims_by_age_only_what_every_group_acknowledged(
    settings: Settings, tmp_path: Path
) -> None:
    # FANOUT_RETENTION: memory is rate x retention. Trimming is XADD's MINID ~ (whole
    # stream nodes, here of 5 entries), never past an entry a group still needs.
    extra = ["--stream-node-max-entries", "5"]
    with ValkeyProcess(tmp_path / "v", extra=extra) as server:
        own = dataclasses.replace(settings, redis_url=server.url, retention=1)
        keys = Keys(own.stream_prefix)
        stream = keys.completed(TYPE)
        client = Redis.from_url(server.url)
        try:
            await client.xgroup_create(stream, "g", id="$", mkstream=True)
            async with serving(own) as http:
                for n in range(50):
                    assert (await post(http, body(n))).status_code == 202
                read = await client.xreadgroup("g", "c", {stream: ">"}, count=50)
                ids = [entry_id for entry_id, _ in read[0][1]]
                await client.xack(stream, "g", *ids[:30])  # 20 still pending
                await asyncio.sleep(1.2)
                assert (await post(http, body(50))).status_code == 202
                for _ in range(6):  # a whole node of 5, and one
                    assert (await post(http, samples.sample("VOUCHERS.IMPORT"))).status_code == 202
                await asyncio.sleep(1.1)  # no group on this one: history, trimmed by age
                assert (await post(http, samples.sample("VOUCHERS.IMPORT"))).status_code == 202
            kept = [entry_id for entry_id, _ in await client.xrange(stream)]
            ungrouped = await client.xlen(keys.completed("VOUCHERS.IMPORT"))
        finally:
            await client.aclose()
    assert set(ids[30:]) <= set(kept)  # every pending one is there
    assert 21 <= len(kept) < 51  # acknowledged ones went by age (whole nodes of 5)
    assert ungrouped == 2  # the full node went; the newest node is kept whole
