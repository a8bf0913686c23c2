"""The local server is found without configuration: by the CLI, the example and ``Consumer``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.consumer import Consumer, NoRedis
from tests.support.cli import EXAMPLE, LocalServe, clean_env, run


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServe]:
    """One ``fanout serve`` with nothing configured, in an empty folder."""
    server = LocalServe(tmp_path_factory.mktemp("project")).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_example_with_no_arguments_receives_a_sent_sample(served: LocalServe) -> None:
    example = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--count", "1", "--group", "newcomer"],
        cwd=served.folder,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = run("send", "--sample", "VOUCHERS.IMPORT", cwd=served.folder)
        assert sent.returncode == 0, sent.stderr
        accepted = json.loads(sent.stdout.split(" ", 1)[1])
        out, err = example.communicate(timeout=30)
    finally:
        if example.poll() is None:
            example.kill()
            example.communicate()
    assert example.returncode == 0, err
    assert out.splitlines() == [
        f"VOUCHERS.IMPORT {accepted['id']} DONE: 2 failed (Duplicate resource key)"
    ]
    socket_url = f"unix://{(served.folder / '.fanout' / 'valkey.sock').resolve()}"
    assert err.splitlines() == [
        f"connected to {socket_url} of the local `fanout serve` "
        f"(pid {served.record['pid']}, .fanout/server.json)"
    ]
    assert sent.stderr.splitlines() == [
        f"fanout: posting to {served.base_url}/webhooks/voucherify of the local `fanout serve` "
        f"(pid {served.record['pid']}, .fanout/server.json)"
    ]


def test_the_record_holds_the_way_in_and_no_secret(served: LocalServe) -> None:
    record = served.record
    assert record["pid"] == served.process.pid if served.process else None
    assert record["redis_url"] == f"unix://{(served.folder / '.fanout' / 'valkey.sock').resolve()}"
    assert record["webhook_url"] == f"{served.base_url}/webhooks/voucherify"
    assert record["dashboard_url"] == f"{served.base_url}/dashboard"
    secret = (served.folder / ".fanout" / "webhook-secret").read_text().strip()
    assert secret not in json.dumps(record)
    output = served.output()
    assert f"dashboard: {served.base_url}/dashboard?token=" in output
    assert f"webhook URL: {served.base_url}/webhooks/voucherify" in output


def test_a_second_serve_in_the_same_folder_is_one_line_and_exit_1(served: LocalServe) -> None:
    second = run("serve", "--port", "1", cwd=served.folder, timeout=30)
    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.splitlines() == [
        f"fanout: another `fanout serve` (pid {served.record['pid']}, webhook URL "
        f"{served.base_url}/webhooks/voucherify) already uses the data folder .fanout: "
        "stop it, or give this one another --data-dir (FANOUT_DATA_DIR)"
    ]
    assert served.process is not None and served.process.poll() is None, "the first one runs on"


def test_commands_in_a_subfolder_find_the_server_above(served: LocalServe) -> None:
    below = served.folder / "src" / "billing"
    below.mkdir(parents=True, exist_ok=True)
    stats = run("stats", "--json", cwd=below)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["prefix"] == "voucherify"
    assert stats.stderr.startswith("fanout: connected to unix://")


def test_send_from_another_folder_needs_the_data_dir_and_says_where_it_looked(
    served: LocalServe, tmp_path: Path
) -> None:
    lost = run("send", "--sample", "ORDERS.IMPORT", cwd=tmp_path)
    assert lost.returncode == 1
    [line] = lost.stderr.splitlines()
    assert line.startswith("fanout: no secret to sign with:")
    assert str(tmp_path / ".fanout" / "webhook-secret") in line and "--data-dir" in line

    data_dir = str(served.folder / ".fanout")
    for how in (["--data-dir", data_dir],):
        found = run("send", "--sample", "ORDERS.IMPORT", *how, cwd=tmp_path)
        assert found.returncode == 0, found.stderr
        assert found.stdout.startswith("202 ")
    by_env = run(
        "send", "--sample", "ORDERS.IMPORT", cwd=tmp_path, env=clean_env(FANOUT_DATA_DIR=data_dir)
    )
    assert by_env.returncode == 0, by_env.stderr
    tail = run("tail", "--json", "--type", "ORDERS.IMPORT", "--data-dir", data_dir, cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == 2


async def test_consumer_connect_uses_the_local_server(served: LocalServe) -> None:
    consumer = await Consumer.connect(
        "lib", data_dir=served.folder / ".fanout", announce=False, types=["SKUS.IMPORT_CSV"]
    )
    try:
        assert consumer.keys.prefix == "voucherify"
        assert await consumer.redis.ping()
    finally:
        await consumer.aclose()


def test_a_stale_record_is_ignored_and_said_so(tmp_path: Path) -> None:
    data_dir = tmp_path / ".fanout"
    data_dir.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    record = {"pid": int(gone.stdout), "redis_url": "unix:///nowhere.sock"}
    (data_dir / "server.json").write_text(json.dumps(record))
    stats = run("stats", cwd=tmp_path)
    assert stats.returncode == 1
    [line] = stats.stderr.splitlines()
    assert line.startswith("fanout: no Redis to connect to:")
    assert (
        f"ignored .fanout/server.json: its server (pid {gone.stdout.strip()}) is no longer running"
        in line
    )
    with pytest.raises(NoRedis, match="no longer running"):
        asyncio.run(Consumer.connect("g", data_dir=data_dir))


def test_the_example_without_any_server_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=clean_env(FANOUT_DATA_DIR=str(tmp_path / "none")),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("consume.py: no Redis to connect to: url and FANOUT_REDIS_URL")
    assert "Start `fanout serve` here" in line


def test_serve_stops_and_removes_its_record(tmp_path: Path) -> None:
    server = LocalServe(tmp_path).start()
    assert (tmp_path / ".fanout" / "server.json").exists()
    assert server.stop() == 0
    assert not (tmp_path / ".fanout" / "server.json").exists()
    assert not os.path.exists(tmp_path / ".fanout" / "valkey.sock")
