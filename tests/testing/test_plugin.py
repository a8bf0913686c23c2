"""The pytest plugin (entry point pytest11) and its fanout fixture: a real Redis, the
receiver's publisher and a real Consumer, which handles as deliver() does in process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service import StreamEvent
from service.testing import Fanout, deliver, sample

ROOT = Path(__file__).resolve().parents[2]

#: A user's project: pytest-asyncio in its default (strict) mode, warnings as errors,
#: no conftest of ours.
USER_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"


OPTIONS = ("-p", "no:cacheprovider", "-q")


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    ini = tmp_path / "pytest.ini"
    ini.write_text(USER_INI)
    env = {k: v for k, v in os.environ.items() if k != "FANOUT_TEST_REDIS_URL"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ini),
            "--rootdir",
            str(tmp_path),
            *OPTIONS,
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.spawns
def test_the_example_test_file_passes_as_a_users_project_runs_it(tmp_path: Path) -> None:
    # In a pytest of its own rather than in testpaths: under the suite's pyproject
    # (asyncio_mode auto) and beside tests/conftest.py's fixtures, a missing entry point
    # or asyncio marker would go unseen. Here its fanout fixture comes from the entry
    # point alone, on an embedded Valkey the plugin starts.
    result = run_pytest(tmp_path, str(ROOT / "examples" / "test_handler.py"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


@pytest.mark.spawns
def test_the_plugin_starts_and_loads_nothing_until_a_test_asks(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(
        "import os, sys\n"
        "def test_nothing_started():\n"
        "    assert 'service.testing.plugin' in sys.modules\n"
        "    assert 'service.testing.live' not in sys.modules\n"
        "    assert 'service.streams.embedded' not in sys.modules\n"
        "    me = os.getpid()\n"
        "    with open(f'/proc/{me}/task/{me}/children') as children:\n"
        "        assert children.read() == ''  # no server process started\n"
    )
    result = run_pytest(tmp_path, "test_plain.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


async def test_a_real_consumer_handles_as_deliver_does(fanout: Fanout) -> None:
    # The same handler, failing on one event: the in-process run and a real Consumer
    # on the published entries ack, retry and poison alike.
    async def handler(event: StreamEvent) -> None:
        if event.id == "aa_bad":
            raise ValueError(f"cannot bill {event.id}")

    events = [sample("VOUCHERS.IMPORT", id="aa_ok"), sample("VOUCHERS.IMPORT", id="aa_bad")]
    options = {"max_deliveries": 3, "handler_timeout": 0.5}
    in_process = await deliver(handler, *events, group="billing", **options)  # type: ignore[arg-type]

    live = dict(options, min_idle=0.6, claim_interval=0.1, types=["VOUCHERS.IMPORT"])
    async with fanout.consuming(handler, "billing", **live) as consumer:
        await fanout.publish(*events)
        await fanout.settled(consumer)
    assert consumer.stats == in_process.stats
    assert (in_process.stats.handled, in_process.stats.failed, in_process.stats.poisoned) == (
        1,
        3,
        1,
    )
    [letter] = await fanout.dead_letters()
    [poisoned] = in_process.poisoned
    same = ("reason", "group", "deliveries", "error", "body", "sha256")
    assert {k: letter[k] for k in same} == {k: poisoned.letter[k] for k in same}
    assert letter["stream"] == f"{fanout.prefix}:{{VOUCHERS.IMPORT}}:completed"


async def test_publishing_the_same_event_twice_gives_one_entry(fanout: Fanout) -> None:
    event = sample("voucher.published")
    first = await fanout.publish(event)
    assert await fanout.publish(event) == first
    assert await fanout.redis.xlen(f"{fanout.prefix}:{{voucher.published}}:events") == 1


async def test_a_fanout_removes_its_keys_when_closed(fanout_redis_url: str) -> None:
    async with Fanout(fanout_redis_url) as live:
        await live.publish(sample("custom"), sample("ORDERS.IMPORT"))
        prefix = live.prefix
    client = Redis.from_url(fanout_redis_url)
    try:
        assert [key async for key in client.scan_iter(match=f"{prefix}:*")] == []
    finally:
        await client.aclose()


async def test_settled_waits_for_a_group_whose_lag_the_server_cannot_tell(fanout: Fanout) -> None:
    # An entry deleted before the group read it: XINFO GROUPS says lag null until it has.
    seen: list[str] = []

    async def handler(event: StreamEvent) -> None:
        seen.append(event.id)

    _, deleted, _ = await fanout.publish(
        *(sample("SKUS.IMPORT_CSV", id=f"aa_{n}") for n in range(3))
    )
    stream = f"{fanout.prefix}:{{SKUS.IMPORT_CSV}}:completed"
    await fanout.redis.xdel(stream, deleted)
    async with fanout.consuming(handler, "g", types=["SKUS.IMPORT_CSV"]) as consumer:
        await fanout.settled(consumer)
    assert seen == ["aa_0", "aa_2"]
