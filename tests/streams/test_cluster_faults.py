"""Cluster faults under retrying load, at the default durability (issue 28).

One cluster for the module: three primaries, a replica each (Valkey 9, AOF on,
``appendfsync always``), every replication link 50 ms behind through a proxy.
The receiver runs in process; senders post unique completions of all 22 types
and retry every non-2xx until it is acknowledged; a second into the load one
primary meets its fault (tests/support/cluster_faults.py; ``python -m
tests.support.failover_runs --topology cluster`` runs each 3 times and prints
the table of RELIABILITY.md). Each fault leaves the cluster whole for the next.

Before (main at issue 28): ``auto`` on a cluster waited for nothing, so a crash of a
primary's host lost the last acknowledged writes its replica had not received
(2 of 600 here with ``none``, which is what ``auto`` was); ``aof`` and
``replicas:N`` were refused at start-up.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from service.config import Durability, Secret, Settings
from service.domain import actions, samples, webhook_samples
from service.streams import connection
from service.streams.keys import Keys
from service.streams.publisher import Publisher
from tests.support import cluster_faults
from tests.support.cluster import ValkeyCluster
from tests.support.http import SECRET, post, serving

pytestmark = [pytest.mark.slow, pytest.mark.spawns]

SHORT = {"offered_seconds": 3.0, "before": 1.0, "settle": 40.0}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    with cluster_faults.fault_cluster(tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.mark.parametrize("fault", cluster_faults.FAULTS)
async def test_a_cluster_fault_loses_and_doubles_nothing_acknowledged(
    cluster: ValkeyCluster, fault: str
) -> None:
    report = await cluster_faults.run_fault(cluster, fault, **SHORT)  # type: ignore[arg-type]
    print(f"\n{report.line()}")
    assert report.lost == 0, f"acknowledged, then missing: {report.lost_ids[:10]}"
    assert report.doubled == 0
    assert report.acknowledged == report.offered, "every delivery acknowledged in the end"
    assert set(report.answers) <= {200, 202, 503, 0}
    if fault in ("kill", "lag"):
        assert report.refused_there > 0, "the fault was felt: that primary's streams got 503"


@pytest.mark.parametrize(
    ("durability", "says"),
    [
        (Durability(), "durability auto -> every replica, WAITAOF 1 0 + WAIT 1: "),
        (Durability("aof"), "durability aof: a 2xx waits until Redis has the delivery in its "),
        (Durability("replicas", 1), "durability replicas:1: a 2xx waits until 1 replica(s) "),
    ],
    ids=str,
)
async def test_every_durability_is_accepted_on_a_cluster_and_waits_on_each_primary(
    cluster: ValkeyCluster, durability: Durability, says: str
) -> None:
    # Before: "only 'auto' and 'none' work with FANOUT_REDIS_CLUSTER=1", and auto waited
    # for nothing (a keyless wait through the cluster client proves nothing).
    settings = Settings(
        redis_url=cluster.url,
        redis_cluster=True,
        secrets=(Secret(SECRET),),
        stream_prefix=f"modes{durability.mode}",
        durability=durability,
    )
    client = connection.from_settings(settings)
    try:
        line = (await Publisher.from_settings(client, settings).check_durability()).line
    finally:
        await client.aclose()
    assert line.startswith(says)
    waits = "cmdstat_waitaof" if durability.mode == "aof" else "cmdstat_wait"
    before = _calls(cluster, waits)
    async with serving(settings) as http:
        for type_ in actions.TYPES:
            assert (await post(http, samples.sample(type_))).status_code == 202
    after = _calls(cluster, waits)
    primaries = [port for port in after if after[port] > before.get(port, 0)]
    assert len(primaries) == 3, "each primary's batches were followed by their own wait"


def _calls(cluster: ValkeyCluster, command: str) -> dict[int, int]:
    out = {}
    for node in cluster.nodes:
        if node.role() == "master":
            with node.client() as client:
                stats = client.info("commandstats")
            out[node.port] = int(stats.get(command, {}).get("calls", 0))
    return out


async def test_a_slot_being_migrated_is_a_503_then_moved_is_followed(
    cluster: ValkeyCluster, settings: Settings, keys: Keys
) -> None:
    # A fresh event type: its slot holds no key of ours. While the slot migrates, the
    # source answers ASK (the keys are not there) and the target, after ASKING,
    # TRYAGAIN (a script's keys are not all there yet): the cluster takes no
    # multi-key write into a slot mid-migration, so the delivery is a 503 with
    # Retry-After and nothing is written. Once the slot moved, the receiver's old
    # map meets MOVED and follows it.
    type_ = f"zz.ask.{uuid.uuid4().hex[:8]}"
    slot = key_slot(keys.events(type_).encode())
    source = cluster.primary_of(slot)
    target = next(
        node
        for node in cluster.nodes
        if node.process is not None and node.role() == "master" and node is not source
    )
    own = dataclasses.replace(settings, redis_url=cluster.url, redis_cluster=True)
    envelope = webhook_samples.envelope("redemption.succeeded") | {"type": type_}
    with target.client() as admin:
        admin.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id())
    with source.client() as admin:
        admin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id())
    async with serving(own) as http:
        migrating = await post(http, envelope)
        assert migrating.status_code == 503
        assert migrating.headers["retry-after"]
        for node in cluster.nodes:
            if node.process is not None and node.role() == "master":
                with node.client() as admin:
                    admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id())
        moved = await post(http, envelope)  # the receiver's map still names the source
        again = await post(http, envelope)
    assert (moved.status_code, again.status_code) == (202, 200), moved.text
    assert again.json()["entry_id"] == moved.json()["entry_id"]
    reader = RedisCluster.from_url(cluster.url)
    try:
        entries = await reader.xrange(keys.events(type_))
    finally:
        await reader.aclose()
    assert [e[0].decode() for e in entries] == [moved.json()["entry_id"]]
