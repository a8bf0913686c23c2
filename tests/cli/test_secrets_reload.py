"""A secret rotated in ``FANOUT_SECRETS_FILE`` with SIGHUP, on a real ``fanout serve``."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from service.domain import samples
from service.http.app import WEBHOOK_PATH
from tests.support.http import signed
from tests.support.servers import FanoutProcess

pytestmark = pytest.mark.spawns


def deliver(client: httpx.Client, secret: str) -> int:
    body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT"))  # a new action each time
    return client.post(WEBHOOK_PATH, content=body, headers=signed(body, secret)).status_code


@pytest.mark.slow
def test_sighup_rotates_the_file_secret_in_every_worker_without_a_restart(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "webhook-secrets"
    path.write_text("old-secret\n")
    fanout = FanoutProcess(
        tmp_path / "fanout.log",
        "--workers=2",
        f"--redis-url={redis_url}",
        f"--stream-prefix={prefix}",
        env={"FANOUT_SECRETS_FILE": str(path)},
    )
    fanout.start()
    # A new connection per request, so the kernel hands them to either worker.
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    client = httpx.Client(base_url=fanout.base_url, limits=no_keepalive, timeout=10)
    try:
        workers = fanout.workers()
        assert len(workers) == 2
        # start() returns once one worker serves; the other may still be starting, with
        # no SIGHUP handler yet. A SIGHUP then must not end it (nothing changed yet).
        assert fanout.process is not None
        fanout.process.send_signal(signal.SIGHUP)
        # Either worker takes some of these: each verifies the old secret.
        assert {deliver(client, "old-secret") for _ in range(8)} == {202}
        assert deliver(client, "new-secret") == 401

        path.write_text("new-secret\n")
        assert fanout.process is not None
        fanout.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while deliver(client, "new-secret") != 202:
            assert time.monotonic() < deadline, fanout.log_path.read_text()
            time.sleep(0.1)
        time.sleep(0.5)  # the other worker got its SIGHUP at the same time
        assert {deliver(client, "new-secret") for _ in range(8)} == {202}
        assert {deliver(client, "old-secret") for _ in range(8)} == {401}
        # The same worker processes: the secrets changed inside them, nothing restarted.
        assert fanout.workers() == workers
        assert fanout.process.poll() is None
    finally:
        client.close()
        fanout.stop()
