"""Sentinel faults under retrying load, at the default durability (issue 28).

Each run starts its own master, one or two replicas and a Sentinel (Valkey 9, AOF
on, ``appendfsync always``), `fanout serve` pointed at the Sentinel, and senders
that retry every non-2xx until it is acknowledged; the fault comes a second into
the load: kill -9 of the master, a planned ``SENTINEL FAILOVER``, a host crash (the
replication link 50 ms behind, lost with the master), a 5 s black hole between the
receiver and Valkey (tests/support/failover_runs.py, which also runs them 3 times
each as a script). Every completed stream is then read on the primary Sentinel names.

Before (main at issue 28): a planned failover with two replicas lost 141 of 600
acknowledged deliveries even with ``replicas:1``, and the old primary ran 76-201
script calls after Sentinel named the new one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.consumer import Consumer
from service.domain.completion import CompletionEvent
from service.streams import connection
from service.streams.keys import Keys
from tests.support import failover_runs
from tests.support.feed import append, running, until
from tests.support.redis_servers import HOST, free_port
from tests.support.sentinel import ReplicatedSet

pytestmark = [pytest.mark.slow, pytest.mark.spawns]

#: The suite's load: lighter than the script's (150/s from 24 connections), so the eight
#: runs can go side by side: about 30 s in all instead of about 90 one after another.
SHORT = {"concurrency": 8, "rate": 100.0, "offered_seconds": 2.0, "before": 1.0, "settle": 90.0}


@pytest.mark.timeout(240)  # about 30 s; far longer when the shared machine is loaded
async def test_every_sentinel_fault_loses_and_doubles_nothing_acknowledged(tmp_path: Path) -> None:
    """Each fault with one replica and with two, all side by side (each run its own
    servers and receiver); and a planned failover with two replicas at ``replicas:1``,
    where only the fence at ``+try-failover`` keeps a 2xx from a WAIT 1 the old
    primary's other replica confirmed (without it: 131-141 of 600 lost, 4 runs)."""
    cases = [(fault, n, "default") for fault in failover_runs.FAULTS for n in (1, 2)]
    cases.append(("planned", 2, "replicas:1"))
    # Every run ends (its servers stopped) before a failure of one is raised.
    results = await asyncio.gather(
        *(failover_runs.measure(tmp_path / f"{f}{n}{d}", f, n, d, **SHORT) for f, n, d in cases),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    reports = [result for result in results if isinstance(result, failover_runs.FaultReport)]
    lines = "\n".join(report.line() for report in reports)
    print(f"\n{lines}")
    for report in reports:
        assert report.lost == 0, f"acknowledged, then missing: {report.lost_ids[:10]}\n{lines}"
        assert report.doubled == 0, lines
        assert report.acknowledged == report.offered, f"every delivery acknowledged\n{lines}"
        assert set(report.answers) <= {200, 202, 503, 0}, lines
        if report.fault == "planned":
            # Nothing reaches a primary once its failover began (fenced at +try-failover).
            assert report.old_primary_calls == 0, lines


@pytest.mark.timeout(240)
async def test_a_receiver_cut_from_sentinel_through_a_planned_failover_loses_nothing(
    tmp_path: Path,
) -> None:
    """Every Sentinel black-holed for the receiver for 6 s while a planned failover with two
    replicas runs: it hears none of the events that fence the old primary. At the default
    durability each batch waits for every replica, and the promoted one no longer
    answers the old primary, so nothing is acknowledged there (at ``replicas:1`` the other
    replica still confirmed it: 136-149 of ~1,275 lost, docs/deploy.md)."""
    report = await failover_runs.measure(tmp_path / "deaf", "deaf", 2, "default", **SHORT)
    print(f"\n{report.line()}")
    assert report.lost == 0, f"acknowledged, then missing: {report.lost_ids[:10]}"
    assert report.doubled == 0, report.line()
    assert report.acknowledged == report.offered, report.line()
    assert set(report.answers) <= {200, 202, 503, 0}, report.line()


async def test_a_consumer_follows_a_planned_failover_before_the_old_primary_is_demoted(
    tmp_path: Path, keys: Keys
) -> None:
    """The consumer uses the service's connection code: it reads from the new primary
    as soon as Sentinel names it, not once the old one is demoted (about 10 s later;
    until then the old primary still answers reads, with nothing new to read)."""
    handled: list[str] = []

    async def handle(event: CompletionEvent) -> None:
        handled.append(event.id)

    with ReplicatedSet(tmp_path) as group:
        client = connection.connect(group.sentinel.url, cluster=False, timeout=2.0)
        writer = connection.connect(group.sentinel.url, cluster=False, timeout=2.0)
        try:
            member = Consumer(
                client,
                "g",
                prefix=keys.prefix,
                types=["ORDERS.IMPORT"],
                block=0.5,
                handler_timeout=2,
                min_idle=5,
            )
            async with running(member, handle):
                before = await append(writer, keys, "ORDERS.IMPORT", 3)
                await until(lambda: set(before) <= set(handled))
                host, port = await asyncio.to_thread(group.sentinel.failover, demote=False)
                async with Redis(host=host, port=port) as new:
                    later = await append(new, keys, "ORDERS.IMPORT", 3)
                await until(lambda: set(later) <= set(handled), within=30)
                assert group.master.role() == "master", "handled before the old one was demoted"
        finally:
            await client.aclose()
            await writer.aclose()


async def test_a_client_follows_through_the_sentinels_that_answer(
    tmp_path: Path, keys: Keys
) -> None:
    """Three Sentinels (quorum 2) and a dead one listed first in the URL: writes go to
    the new primary once Sentinel names it, while the old one still calls itself master."""
    with ReplicatedSet(tmp_path, replicas=2, sentinels=3) as group:
        dead = free_port()
        url = group.url.replace("://", f"://{HOST}:{dead},", 1)
        client = connection.connect(url, cluster=False, timeout=2.0)
        try:
            await append(client, keys, "ORDERS.IMPORT", 1)
            host, port = await asyncio.to_thread(group.sentinel.failover, demote=False)
            written = await append(client, keys, "ORDERS.IMPORT", 3)
            async with Redis(host=host, port=port) as new:
                stream = await new.xrange(keys.completed("ORDERS.IMPORT"))
            assert set(written) <= {fields[b"id"].decode() for _, fields in stream}
            assert group.master.role() == "master", "written before the old one was demoted"
        finally:
            await client.aclose()
