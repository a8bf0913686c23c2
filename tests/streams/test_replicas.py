"""The default durability with replicas (issue 28): a 2xx waits for every replica online,
and a primary that lost its replicas answers 503, never a weaker 2xx in silence."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from service.config import Durability, Settings
from service.domain import samples
from service.streams.keys import Keys
from service.streams.replication import Replication, online_replicas
from tests.support.http import SECRET, post, serving
from tests.support.servers import FanoutProcess, ValkeyProcess, has_binary

needs_redis = pytest.mark.skipif(not has_binary("redis"), reason="no redis-server on PATH")


def test_every_replica_counts_and_a_fall_holds_the_former_count() -> None:
    replication = Replication(hold=5.0)
    replication.update("a", 0, now=0.0)
    assert replication.missing("a") is None, "no replica ever seen: today's promise"
    replication.update("a", 2, now=1.0)
    assert replication.expected and replication.required("a") == 2
    replication.update("a", 1, now=2.0)  # one left: a failover may be promoting it
    assert replication.required("a") == 2
    assert "1 of its 2 replicas" in (replication.missing("a") or "")
    replication.update("a", 1, now=6.9)
    assert replication.missing("a") is not None
    replication.update("a", 1, now=7.0)  # held HOLD seconds: follow the count down
    assert (replication.required("a"), replication.missing("a")) == (1, None)
    replication.update("a", 0, now=8.0)
    replication.update("a", 0, now=20.0)
    assert replication.required("a") == 1, "never fewer than one once replicas were seen"
    assert "no replica online" in (replication.missing("a") or "")
    replication.update("a", 2, now=21.0)  # attaching counts at once
    assert (replication.required("a"), replication.missing("a")) == (2, None)


def test_only_replicas_in_sync_are_counted() -> None:
    info = {
        "role": "master",
        "connected_slaves": 2,
        "slave0": {"ip": "10.0.0.2", "port": 6379, "state": "online", "offset": 9, "lag": 0},
        "slave1": "ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0",
    }
    assert online_replicas(info) == 1


@dataclasses.dataclass
class Pair:
    master: ValkeyProcess
    replica: ValkeyProcess


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A Valkey master (AOF, appendfsync always) and its replica, for this module."""
    root = tmp_path_factory.mktemp("replicated")
    master = ValkeyProcess(root / "m", appendonly=True, appendfsync="always")
    replica = ValkeyProcess(root / "r", appendonly=True, replicaof=master)
    try:
        master.start()
        replica.start()
        replica.wait_synced()
        yield Pair(master, replica)
    finally:
        replica.stop()
        master.stop()


async def _until_status(http: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    for _ in range(400):
        response = await http.get(path)
        if response.status_code == status:
            return response
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}")


@pytest.mark.spawns
async def test_a_2xx_waits_for_the_replica_and_a_primary_without_it_answers_503(
    replicated: Pair, settings: Settings, keys: Keys
) -> None:
    master, replica = replicated.master, replicated.replica
    own = dataclasses.replace(settings, redis_url=master.url)
    admin = Redis.from_url(master.url)
    stream = keys.completed("ORDERS.IMPORT")
    try:
        async with serving(own) as http:
            for _ in range(3):
                assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
            ready = (await http.get("/readyz")).json()
            assert ready["durability"]["survives"] == ["failover", "redis_kill", "host_crash"]
            assert ready["durability"]["primaries"]["primary"]["replicas_waited_for"] == 1
            metrics = (await http.get("/metrics")).text
            assert 'fanout_durability_survives{fault="failover"} 1.0' in metrics
            assert 'fanout_durability_replicas{primary="primary"} 1.0' in metrics
            waits = int((await admin.info("commandstats"))["cmdstat_wait"]["calls"])
            assert waits >= 3

            replica.stop()
            try:
                refused = await _until_status(http, "/readyz", 503)
                assert "has no replica online" in refused.json()["detail"]
                assert refused.headers["retry-after"]
                before = await admin.xlen(stream)
                answers = [await post(http, samples.sample("ORDERS.IMPORT")) for _ in range(5)]
                assert [a.status_code for a in answers] == [503] * 5
                assert all(a.headers["retry-after"] for a in answers)
                assert await admin.xlen(stream) == before, "refused at once: nothing written"
            finally:
                replica.start()
                replica.wait_synced()
            await _until_status(http, "/readyz", 200)
            assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
    finally:
        await admin.aclose()


@pytest.mark.spawns
async def test_explicit_aof_still_answers_without_replicas(
    replicated: Pair, settings: Settings
) -> None:
    own = dataclasses.replace(
        settings, redis_url=replicated.master.url, durability=Durability("aof")
    )
    async with serving(own) as http:
        ready = (await http.get("/readyz")).json()
        # The master fsyncs before every reply (always), but nothing waits for the replica.
        assert ready["durability"]["survives"] == ["redis_kill", "host_crash"]
        assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202


@pytest.mark.spawns
@needs_redis
def test_redis_7_0_with_appendfsync_always_says_one_thing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: start-up printed "warning: durability auto -> none: ... a kill -9 of Redis can
    # lose acknowledged deliveries", then the worker logged "durability none: ... it survives
    # a kill -9 of Redis and a crash of its host". The server fsyncs before every reply.
    server = ValkeyProcess(tmp_path / "r", binary="redis", appendonly=True, appendfsync="always")
    server.start()
    log = tmp_path / "serve.log"
    receiver = FanoutProcess(log, env={"FANOUT_SECRETS": SECRET, "FANOUT_REDIS_URL": server.url})
    try:
        receiver.start()
    finally:
        receiver.stop()
        server.stop()
    lines = [line for line in log.read_text().splitlines() if "durability" in line]
    assert lines == [
        "durability auto -> none: this Redis has no WAITAOF (Redis < 7.2), but the server "
        "runs appendonly yes and appendfsync always, which writes and fsyncs before every "
        "reply: a 2xx, sent once Redis applied the write, survives a kill -9 of Redis and a "
        "crash of its host"
    ]


@pytest.mark.spawns
@needs_redis
async def test_the_worker_logs_the_line_start_up_printed(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    server = ValkeyProcess(tmp_path / "r", binary="redis", appendonly=True, appendfsync="always")
    server.start()
    try:
        with caplog.at_level(logging.INFO):
            async with serving(dataclasses.replace(settings, redis_url=server.url)) as http:
                assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
    finally:
        server.stop()
    logged = [r for r in caplog.records if r.getMessage().startswith("durability")]
    assert [r.getMessage() for r in logged] == [
        "durability auto -> none: this Redis has no WAITAOF (Redis < 7.2), but the server "
        "runs appendonly yes and appendfsync always, which writes and fsyncs before every "
        "reply: a 2xx, sent once Redis applied the write, survives a kill -9 of Redis and a "
        "crash of its host"
    ]
    assert logged[0].levelno == logging.INFO
