"""The consumer on a Redis Cluster: one read per type's hash slot, poison letters, and the
operator commands with the cluster client."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.domain.completion import CompletionEvent
from service.streams import connection
from service.streams.keys import Keys
from tests.consumer.test_consumer import consumer
from tests.support.feed import LocalCluster, event_json, running, until

pytestmark = pytest.mark.spawns


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """FANOUT_TEST_CLUSTER_URL (a node of a Redis Cluster), else a local three-node cluster."""
    url = os.environ.get("FANOUT_TEST_CLUSTER_URL")
    if url:
        yield url
        return
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


async def test_on_a_cluster_each_type_is_read_in_its_own_slot(cluster_url: str) -> None:
    client = connection.connect(cluster_url, cluster=True, timeout=2)
    keys = Keys(f"t{uuid.uuid4().hex[:12]}")
    types = ["VOUCHERS.IMPORT", "ORDERS.IMPORT", "SKUS.IMPORT_CSV"]
    counts: collections.Counter[str] = collections.Counter()
    ids: list[str] = []

    async def handle(event: CompletionEvent) -> None:
        counts[event.id] += 1
        if event.id == ids[0]:
            raise RuntimeError("poison on a cluster")

    try:
        for type_ in types:  # a pipeline would cross slots: one append per entry
            for _ in range(20):
                id_, data = event_json(type_)
                fields = {"type": type_, "status": "DONE", "id": id_, "event": data}
                await client.xadd(keys.completed(type_), fields)  # type: ignore[arg-type]
                ids.append(id_)
        member = consumer(client, keys, "g", types=types, progress=True, max_deliveries=1)
        async with running(member, handle):
            await until(lambda: len(counts) == len(ids))
            async with asyncio.timeout(5):
                while not await client.xlen(keys.dead_letters()):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        assert set(counts) == set(ids) and set(counts.values()) == {1}
        for type_ in types:
            assert (await client.xpending(keys.completed(type_), "g"))["pending"] == 0

        # The operator commands work with the cluster client too.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
        env |= {
            "FANOUT_REDIS_URL": cluster_url,
            "FANOUT_REDIS_CLUSTER": "1",
            "FANOUT_STREAM_PREFIX": keys.prefix,
        }
        fanout = str(Path(sys.executable).parent / "fanout")
        stats = await asyncio.to_thread(
            subprocess.run, [fanout, "stats", "--json"], env=env, capture_output=True, text=True
        )
        assert stats.returncode == 0, stats.stderr
        data = json.loads(stats.stdout)
        assert data["dead_letters"] == 1
        assert sum(s["length"] for s in data["streams"] if s["kind"] == "completed") == 60
        tail = await asyncio.to_thread(
            subprocess.run,
            [fanout, "tail", "--json", "-n", "100"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert sorted(json.loads(line)["id"] for line in tail.stdout.splitlines()) == sorted(ids)
    finally:
        for type_ in types:
            await client.delete(keys.completed(type_), keys.progress(type_))
        async for key in client.scan_iter(match=keys.dead_pattern()):
            await client.delete(key)
        await client.aclose()
