"""Least privilege: the service runs as a Redis ACL user that can do its job and nothing else.

The rules below are the ones RELIABILITY.md documents for production.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from service.config import Durability, Settings
from service.domain import samples
from service.streams.keys import Keys
from tests.support.acl import service_acl
from tests.support.http import post, serving
from tests.support.servers import ValkeyProcess

pytestmark = pytest.mark.spawns


@pytest.mark.parametrize("durability", [Durability("none"), Durability("aof")], ids=str)
async def test_service_works_under_its_acl_user_and_can_do_nothing_else(
    settings: Settings, tmp_path: Path, durability: Durability
) -> None:
    server = ValkeyProcess(tmp_path / "valkey", appendonly=True, appendfsync="always")
    server.start()
    prefix = settings.stream_prefix
    keys = Keys(prefix)
    admin = Redis.from_url(server.url)
    try:
        await admin.execute_command("ACL", "SETUSER", "fanout", *service_acl(prefix, "s3cret"))
        url = f"redis://fanout:s3cret@127.0.0.1:{server.port}"
        own = dataclasses.replace(settings, redis_url=url, durability=durability, stream_maxlen=3)
        # A group on the progress stream: at its cap the scripts read groups and pending.
        await admin.xgroup_create(keys.progress("ORDERS.IMPORT"), "g", id="$", mkstream=True)
        async with serving(own) as http:
            action = samples.sample("VOUCHERS.IMPORT")
            assert (await post(http, action)).status_code == 202
            assert (await post(http, action)).status_code == 200
            progress = samples.sample("ORDERS.IMPORT", status="IN_PROGRESS", progress=40)
            assert (await post(http, progress)).status_code == 202
            steps = [
                samples.sample("ORDERS.IMPORT", status="IN_PROGRESS", progress=n) for n in range(4)
            ]
            assert [(await post(http, step)).status_code for step in steps] == [202, 202, 503, 503]
            await admin.xreadgroup("g", "c", {keys.progress("ORDERS.IMPORT"): ">"})
            await admin.xack(
                keys.progress("ORDERS.IMPORT"),
                "g",
                *[e for e, _ in await admin.xrange(keys.progress("ORDERS.IMPORT"))],
            )
            assert (await post(http, steps[2])).status_code == 202  # room made under the ACL
            nope = await post(http, b'{"id": "aa_1", "type": "ORDERS.IMPORT", "status": "LATE"}')
            assert nope.json()["status"] == "dead_lettered"
            custom = await post(http, b'{"id": "aa_1", "type": "NOPE"}')  # a custom body
            assert custom.status_code == 202
            assert (await post(http, b"not json")).json()["status"] == "dead_lettered"
            assert (await http.get("/readyz")).status_code == 200
            # A script flushed by an operator is loaded again under the same user.
            await admin.script_flush()
            assert (await post(http, samples.sample("VOUCHERS.IMPORT"))).status_code == 202

        assert await admin.xlen(keys.completed("VOUCHERS.IMPORT")) == 2
        assert await admin.xlen(keys.progress("ORDERS.IMPORT")) == 3
        assert await admin.xlen(keys.dead_letters()) == 2
        # It could look for an older version's dedup keys (and found none, so its scripts
        # stopped reading them).
        scan = (await admin.info("commandstats"))["cmdstat_scan"]
        assert scan["calls"] >= 1 and scan["rejected_calls"] == 0, scan

        user = Redis.from_url(url)
        try:
            refused = {}
            for command in (
                ("FLUSHALL",),
                ("FLUSHDB",),
                ("CONFIG", "SET", "appendonly", "no"),
                ("CONFIG", "GET", "requirepass"),
                ("SCRIPT", "FLUSH"),
                ("KEYS", "*"),
                ("SHUTDOWN", "NOSAVE"),
                ("ACL", "SETUSER", "fanout", "+@all"),
                ("GET", "other:secret"),
                ("SET", "other:key", "x"),
                ("XADD", "other:{X}:completed", "*", "a", "b"),
                ("DEL", keys.completed("VOUCHERS.IMPORT")),
                ("XTRIM", keys.completed("VOUCHERS.IMPORT"), "MAXLEN", "0"),
                ("EVAL", "return redis.call('FLUSHALL')", "0"),
                (
                    "EVALSHA",
                    "0" * 40,
                    "1",
                    "other:key",
                ),
            ):
                name = " ".join(command[:2])
                try:
                    await user.execute_command(*command)
                except (NoPermissionError, ResponseError) as exc:
                    refused[name] = "NOPERM" in str(exc) or "no permissions" in str(exc).lower()
                else:
                    refused[name] = False
            assert all(refused.values()), refused
        finally:
            await user.aclose()
        # Nothing outside the prefix was touched, and the streams are intact.
        assert await admin.xlen(keys.completed("VOUCHERS.IMPORT")) == 2
        assert msgspec.json.decode(
            (await admin.xrange(keys.completed("VOUCHERS.IMPORT")))[0][1][b"event"]
        )["type"] == ("VOUCHERS.IMPORT")
    finally:
        await admin.aclose()
        server.stop()
