"""The ``fanout`` console script as a user runs it: in a folder, nothing configured."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from service.streams import local
from tests.support.servers import free_port

FANOUT = str(Path(sys.executable).parent / "fanout")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "consume.py"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any FANOUT_* variable, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")} | extra


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``fanout *args`` in ``cwd``, to completion."""
    return subprocess.run(
        [FANOUT, *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def command(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``fanout *args`` with ``env``, to completion (30 s at most), without blocking the
    event loop (a server or fake API the test runs in this process keeps answering)."""
    process = await asyncio.create_subprocess_exec(
        FANOUT, *args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return subprocess.CompletedProcess(
        [FANOUT, *args], process.returncode, out.decode(), err.decode()
    )


async def on_redis(redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``fanout *args`` with Redis and the stream prefix from the environment, as an
    operator runs ``tail``, ``stats`` or ``dlq``."""
    return await command(clean_env(FANOUT_REDIS_URL=redis_url, FANOUT_STREAM_PREFIX=prefix), *args)


@contextlib.contextmanager
def serve(folder: Path, *args: str, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``fanout serve`` in ``folder`` until ready, its output kept for the test: its base
    URL and process (stopped with Ctrl-C at exit if the test has not)."""
    port = str(free_port())
    process = subprocess.Popen(
        [FANOUT, "serve", "--port", port, *args],
        cwd=folder,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        process.kill()
        raise TimeoutError(process.communicate()[0])
    try:
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.communicate(timeout=15)


def send(base: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``fanout send *args`` from ``folder`` to the server at ``base``."""
    return run("send", *args, "--url", f"{base}/webhooks/voucherify", cwd=folder)


def embedded_url(data_dir: Path) -> str:
    """The URL, password included, of the embedded Valkey a running ``fanout serve``
    recorded in ``data_dir`` (as ``fanout url --password`` prints it)."""
    return local.find_redis(None, data_dir=data_dir, environ={}).url


class LocalServe:
    """``fanout serve`` started in ``folder`` on a free port, with the embedded Valkey."""

    def __init__(self, folder: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.args = args
        self.env = env if env is not None else clean_env()
        self.log = folder / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        """The embedded Valkey's URL with its password."""
        return embedded_url(self.folder / ".fanout")

    @property
    def record(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.folder / ".fanout" / "server.json").read_text())
        return data

    def start(self, timeout: float = 30) -> LocalServe:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [FANOUT, "serve", "--port", str(self.port), *self.args],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.output())
            try:
                if httpx.get(f"{self.base_url}/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(self.output())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Stop as Ctrl-C does (or with ``sig``); the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)
