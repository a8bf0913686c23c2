"""``fanout serve`` as a real process: several workers, and SIGTERM under load."""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from service.domain import actions, samples
from service.http.app import WEBHOOK_PATH
from service.streams.keys import Keys
from tests.support.http import fanout_on, signed
from tests.support.load import Connection, Tally, make_deliveries, run_load, until
from tests.support.servers import FanoutProcess, ValkeyProcess

pytestmark = pytest.mark.spawns


@pytest.mark.slow
async def test_duplicate_storm_over_two_workers_gives_one_entry(
    redis_url: str, prefix: str, redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    fanout = fanout_on(tmp_path, redis_url, prefix, "--workers=2")
    fanout.start()
    try:
        assert len(fanout.workers()) == 2
        body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))
        headers = signed(body)
        connections = [Connection("127.0.0.1", fanout.port) for _ in range(500)]
        try:
            answers = await asyncio.gather(
                *(c.post(WEBHOOK_PATH, body, headers) for c in connections)
            )
        finally:
            await asyncio.gather(*(c.close() for c in connections))
    finally:
        fanout.stop()

    statuses = collections.Counter(a.status_code for a in answers)
    assert statuses == {202: 1, 200: 499}
    entry_ids = {a.json()["entry_id"] for a in answers}
    assert len(entry_ids) == 1
    entries = await redis.xrange(keys.completed("VOUCHERS.IMPORT"))
    assert [e.decode() for e, _ in entries] == list(entry_ids)


@pytest.mark.slow
async def test_sigterm_under_load_finishes_requests_in_flight_and_exits_0(
    prefix: str, tmp_path: Path
) -> None:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    fanout = fanout_on(tmp_path, server.url, prefix, "--redis-timeout=8")
    fanout.start()
    base_url = fanout.base_url
    keys = Keys(prefix)
    deliveries = make_deliveries(1500, actions.TYPES)
    tally = Tally()
    burst = make_deliveries(40, ["ORDERS.IMPORT"])
    connections = [Connection("127.0.0.1", fanout.port) for _ in burst]
    try:
        load = asyncio.create_task(
            run_load(base_url, deliveries, seconds=20, tally=tally, max_attempts=2)
        )
        await until(lambda: len(tally.acks) >= 300, 20)
        # Hold Redis so the requests below are certainly in flight at SIGTERM.
        server.pause()
        in_flight = [
            asyncio.create_task(c.post(WEBHOOK_PATH, d.body, signed(d.body)))
            for c, d in zip(connections, burst, strict=True)
        ]
        await asyncio.sleep(0.5)
        assert not any(task.done() for task in in_flight)
        fanout.terminate()
        terminated = time.monotonic()
        await asyncio.sleep(0.5)
        server.resume()
        answers = await asyncio.gather(*in_flight)
        code = await asyncio.to_thread(fanout.wait, 15)
        exited = time.monotonic() - terminated
        await asyncio.wait_for(load, 30)

        client = Redis.from_url(server.url)
        try:
            seen: collections.Counter[str] = collections.Counter()
            for type_ in actions.TYPES:
                for _, fields in await client.xrange(keys.completed(type_)):
                    seen[fields[b"id"].decode()] += 1
        finally:
            await client.aclose()
    finally:
        await asyncio.gather(*(c.close() for c in connections))
        fanout.stop()
        server.stop()

    print(
        f"\nSIGTERM: {len(burst)} in flight -> {[a.status_code for a in answers].count(202)} x 202"
        f", load answers {dict(tally.answers)}, transport errors {tally.transport_errors}"
        f", exit {code} after {exited:.2f}s"
    )
    assert code == 0
    assert [a.status_code for a in answers] == [202] * len(burst)
    assert set(tally.answers) <= {200, 202}
    acked = [d.id for d in deliveries if d.status in (200, 202)] + [d.id for d in burst]
    assert len(acked) >= 300 + len(burst)
    assert [i for i in acked if seen[i] != 1] == []
    assert [i for i, n in seen.items() if n > 1] == []


def test_workers_on_the_embedded_server_then_sigterm_exits_0(tmp_path: Path) -> None:
    fanout = FanoutProcess(
        tmp_path / "fanout.log", "--workers=2", env={"FANOUT_DATA_DIR": str(tmp_path / "data")}
    )
    fanout.start()
    try:
        assert len(fanout.workers()) == 2
        secret = (tmp_path / "data" / "webhook-secret").read_text().strip()
        body = msgspec.json.encode(samples.sample("ORDERS.IMPORT"))
        answers = [
            httpx.post(
                fanout.base_url + WEBHOOK_PATH, content=body, headers=signed(body, secret)
            ).status_code
            for _ in range(4)
        ]
        # One generated admin token for every worker: each new connection may land on either.
        token = (tmp_path / "data" / "admin-token").read_text().strip()
        assert f"{fanout.base_url}/dashboard?token={token}" in fanout.log_path.read_text()
        snapshot = fanout.base_url + "/dashboard/snapshot"
        bearer = {"authorization": f"Bearer {token}"}
        dashboard = [httpx.get(snapshot, headers=bearer).status_code for _ in range(4)]
        # The allowed hosts travel too (the default names carry `serve`'s port).
        named = {**bearer, "host": f"localhost:{fanout.port}"}
        dashboard += [httpx.get(snapshot, headers=named).status_code for _ in range(4)]
        refused = httpx.get(snapshot).status_code
        fanout.terminate()
        assert fanout.wait(20) == 0
    finally:
        fanout.stop()
    assert answers == [202, 200, 200, 200]
    assert dashboard == [200] * 8
    assert refused == 401


def test_workers_must_be_a_positive_integer(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--workers", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr


@pytest.mark.slow
async def test_metrics_of_two_workers_add_up(
    redis_url: str, prefix: str, redis: Redis, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    fanout = fanout_on(tmp_path, redis_url, prefix, "--workers=2")
    fanout.start()
    try:
        assert len(fanout.workers()) == 2
        bodies = [msgspec.json.encode(samples.sample("SKUS.IMPORT_CSV")) for _ in range(40)]
        connections = [Connection("127.0.0.1", fanout.port) for _ in range(8)]
        try:
            for start in range(0, 40, 8):
                answers = await asyncio.gather(
                    *(
                        c.post(WEBHOOK_PATH, body, signed(body))
                        for c, body in zip(connections, bodies[start : start + 8], strict=True)
                    )
                )
                assert {a.status_code for a in answers} == {202}
        finally:
            await asyncio.gather(*(c.close() for c in connections))
        # Each scrape lands on either worker; every one must show all 40.
        seen = []
        async with httpx.AsyncClient(base_url=fanout.base_url) as http:
            for _ in range(8):
                text = (await http.get("/metrics", headers={"connection": "close"})).text
                total = sum(
                    sample.value
                    for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "fanout_deliveries_total"
                    and sample.labels == {"type": "SKUS.IMPORT_CSV", "outcome": "accepted"}
                )
                seen.append(total)
    finally:
        fanout.stop()
    assert seen == [40.0] * 8


def _accepted_by_worker(metrics_dir: Path, type_: str) -> dict[int, float]:
    """Deliveries of ``type_`` each worker process accepted, from its own counter file.

    Each process writes ``counter_<pid>.db`` in ``PROMETHEUS_MULTIPROC_DIR``; a
    copy of one file, alone in a folder, is collected as that worker's counts.
    """
    import shutil

    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        alone = metrics_dir.parent / "one-worker" / path.stem
        alone.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        total = sum(
            sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "fanout_deliveries_total"
            and sample.labels == {"type": type_, "outcome": "accepted"}
        )
        if total:
            counts[int(path.stem.removeprefix("counter_"))] = total
    return counts


@pytest.mark.slow
async def test_every_worker_gets_the_whole_settings_cloudevents_included(
    redis_url: str, prefix: str, redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    # Issue 22: the workers were started without FANOUT_CLOUDEVENTS (copied by hand).
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    fanout = fanout_on(
        tmp_path,
        redis_url,
        prefix,
        "--workers=2",
        "--cloudevents=1",
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )
    fanout.start()
    sent = 0
    try:
        workers = fanout.workers()
        assert len(workers) == 2
        served: dict[int, float] = {}
        # New connections until each worker has accepted some (the kernel chooses).
        deadline = time.monotonic() + 15
        while len(served) < 2 and time.monotonic() < deadline:
            bodies = [msgspec.json.encode(samples.sample("SKUS.IMPORT_CSV")) for _ in range(8)]
            connections = [Connection("127.0.0.1", fanout.port) for _ in bodies]
            try:
                answers = await asyncio.gather(
                    *(
                        c.post(WEBHOOK_PATH, b, signed(b))
                        for c, b in zip(connections, bodies, strict=True)
                    )
                )
            finally:
                await asyncio.gather(*(c.close() for c in connections))
            assert {a.status_code for a in answers} == {202}
            sent += len(bodies)
            served = _accepted_by_worker(metrics_dir, "SKUS.IMPORT_CSV")
    finally:
        fanout.stop()
    assert set(served) == set(workers)
    assert sum(served.values()) == sent
    entries = await redis.xrange(keys.completed("SKUS.IMPORT_CSV"))
    assert len(entries) == sent
    for _, fields in entries:
        cloud_event = msgspec.json.decode(fields[b"data"])
        assert cloud_event["specversion"] == "1.0"
        assert msgspec.json.decode(fields[b"event"])["id"] == cloud_event["subject"]
