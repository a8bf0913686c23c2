"""What a newcomer meets: another port for `make serve`, the example through a Redis restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cli import EXAMPLE, ROOT, clean_env, run
from tests.support.servers import ValkeyProcess, free_port

pytestmark = pytest.mark.spawns

MAKE_VENV = ROOT / ".venv" / "bin" / "fanout"


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "make serve exited"
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@pytest.mark.skipif(not MAKE_VENV.exists(), reason="needs the checkout's .venv (make install)")
def test_make_serve_on_another_port(tmp_path: Path) -> None:
    # The README's way (FANOUT_PORT=9000 make serve works too: make passes the environment on).
    port = free_port()
    data = tmp_path / "data"
    # -o: never reinstall here (a pyproject.toml newer than the venv would), just serve.
    command = [
        "make",
        "-s",
        "-o",
        ".venv/.installed",
        "serve",
        f"ARGS=--port {port} --data-dir {data}",
    ]
    env = clean_env()
    # Its own process group: make and the server it runs stop together, as on Ctrl-C.
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        sent = run("send", "--sample", "ORDERS.IMPORT", "--data-dir", str(data), cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        assert f"http://127.0.0.1:{port}/webhooks/voucherify" in sent.stderr
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert f"webhook URL: http://127.0.0.1:{port}/webhooks/voucherify" in output


def test_the_example_says_once_that_redis_went_away_and_once_that_it_is_back(
    tmp_path: Path,
) -> None:
    server = ValkeyProcess(tmp_path / "valkey", appendonly=True)  # the group outlives a restart
    server.start()
    example = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--redis-url", server.url, "--group", "outage"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert example.stderr is not None
        assert example.stderr.readline().startswith(f"connected to {server.url}")
        time.sleep(0.5)  # its groups made, it reads
        server.stop()
        time.sleep(1.5)  # several retries' worth (0.05 s doubling)
        server.start()
        deadline = time.monotonic() + 15
        lines = []
        while time.monotonic() < deadline and not any("is back after" in line for line in lines):
            lines.append(example.stderr.readline())
    finally:
        example.send_signal(signal.SIGINT)
        try:
            rest = example.communicate(timeout=20)[1]
        except subprocess.TimeoutExpired:
            example.kill()
            rest = example.communicate()[1]
        server.stop()
    lines += rest.splitlines(keepends=True)
    said = [line.rstrip("\n") for line in lines if line.strip()]
    assert len(said) == 2, said
    assert said[0].startswith("consume.py: lost Redis (")
    assert said[0].endswith("; retrying until it is back")
    assert said[1].startswith("consume.py: Redis is back after ")
    assert all(len(line) < 200 for line in said), said
