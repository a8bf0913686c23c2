"""The fault-injection kit does what it says, on Valkey and on the machine's Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from redis.exceptions import ReadOnlyError

from tests.support.sentinel import ReplicatedSet
from tests.support.servers import ValkeyProcess, has_binary
from tests.support.slowdisk import SlowDisk, requires_strace

pytestmark = pytest.mark.spawns

BINARIES = [
    pytest.param(name, marks=pytest.mark.skipif(not has_binary(name), reason=f"no {name}"))
    for name in ("valkey", "redis")
]


@pytest.mark.parametrize("binary", BINARIES)
def test_kill_and_restart_keeps_what_was_fsynced(tmp_path: Path, binary: str) -> None:
    with ValkeyProcess(tmp_path, binary=binary, appendonly=True, appendfsync="always") as server:
        with server.client() as client:
            client.set("kept", "1")
        server.kill()
        server.start()
        with server.client() as client:
            assert client.get("kept") == b"1"


@requires_strace
@pytest.mark.parametrize("binary", BINARIES)
def test_slow_disk_delays_every_fsync(tmp_path: Path, binary: str) -> None:
    # appendfsync always: the server fsyncs before it answers, in its main thread.
    with ValkeyProcess(tmp_path, binary=binary, appendonly=True, appendfsync="always") as server:
        with server.client() as client:
            client.set("warm", "1")
            with SlowDisk(server.pid, delay=0.5) as disk:
                started = time.monotonic()
                client.set("k", "v")
                client.set("k", "w")
                waited = time.monotonic() - started
            started = time.monotonic()
            client.set("k", "x")
            after = time.monotonic() - started
        assert waited >= 0.9
        assert disk.delayed >= 2
        assert after < 0.4, "detached: fsyncs are fast again"


@pytest.mark.parametrize("binary", BINARIES)
def test_replica_follows_and_refuses_writes(tmp_path: Path, binary: str) -> None:
    with ValkeyProcess(tmp_path / "a", binary=binary) as master:
        replica = ValkeyProcess(tmp_path / "b", binary=binary, replicaof=master)
        with replica:
            replica.wait_synced()
            with master.client() as client:
                client.set("k", "v")
                client.execute_command("WAIT", 1, 5000)
            with replica.client() as client:
                assert client.get("k") == b"v"
                with pytest.raises(ReadOnlyError):
                    client.set("k", "w")
            assert replica.role() == "slave"


@pytest.mark.slow
@pytest.mark.parametrize("binary", BINARIES)
def test_sentinel_failover_promotes_the_replica(tmp_path: Path, binary: str) -> None:
    with ReplicatedSet(tmp_path, binary=binary) as group:
        assert group.sentinel.master_address() == group.master.address
        new = group.sentinel.failover()
        assert new == group.replica.address
        assert group.replica.role() == "master"
        # The old master is told to follow the new one.
        deadline = time.monotonic() + 5
        while group.master.role() != "slave" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group.master.role() == "slave"
