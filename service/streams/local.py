"""Finding the local ``fanout serve``: the record it keeps in its data folder.

``fanout serve`` writes ``<data dir>/server.json`` (mode 600) once its Redis
answers: the Redis URL with its password left out (the embedded Valkey's
loopback port, or the configured URL) and, for the embedded Valkey, the file
that holds its password; the webhook and dashboard URLs, the stream prefix and
its pid. It removes the file when it stops. Whoever needs Redis and was given no
URL resolves it in this order (``find_redis``):

1. the URL passed explicitly (a ``--redis-url`` flag, an argument);
2. ``FANOUT_REDIS_URL``;
3. the record of a running server: in ``FANOUT_DATA_DIR`` (or the folder
   passed) when set, else in ``.fanout`` of the working folder or of the
   nearest parent folder that has one;
4. else ``NoRedis``, whose message says where it looked.

A record whose process is gone (the server was killed) is stale: it is
ignored, and said so.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from ..config import discovery
from ..errors import FanoutError

RECORD_NAME = "server.json"
#: The webhook secret ``fanout serve`` makes for itself when none is configured, in its
#: data folder, where ``fanout send`` reads it.
SECRET_FILE = "webhook-secret"
LOCK_NAME = "serve.lock"
DATA_DIR = Path(".fanout")
_VERSION = 1


class NoRedis(FanoutError, LookupError):
    """No Redis URL was given and no running local server was found; ``str()`` is one line."""


@dataclass(frozen=True, slots=True)
class LocalServer:
    """What ``server.json`` says about a ``fanout serve``."""

    path: Path
    pid: int
    redis_url: str
    redis_password: bool = False
    #: Where the password is kept (the embedded Valkey's ``redis-password``).
    redis_password_file: Path | None = None
    redis_cluster: bool = False
    stream_prefix: str = "voucherify"
    webhook_url: str = ""
    dashboard_url: str = ""
    started_at: str = ""

    @property
    def data_dir(self) -> Path:
        return self.path.parent

    @property
    def running(self) -> bool:
        return _alive(self.pid)

    def describe(self) -> str:
        return f"the local `fanout serve` (pid {self.pid}, {_short(self.path)})"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A Redis URL and where it came from, for the one "connected to" line."""

    url: str
    source: str
    cluster: bool = False
    #: The stream prefix of the local server, when the URL came from its record.
    stream_prefix: str | None = None
    #: Stale records passed over on the way, each a sentence.
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return f"{mask(self.url)} {self.source}"


def mask(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` for its user, else for the user ``default``.

    The user is named: redis-cli 7.0 sends ``AUTH "" password`` for an empty one
    (``WRONGPASS``), and every client takes ``default:password``.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or "default"
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def without_password(url: str) -> tuple[str, bool]:
    """``url`` with its password removed, and whether it had one."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, False
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host)), True


# --- the record --------------------------------------------------------------


def write(
    data_dir: Path,
    *,
    redis_url: str,
    redis_cluster: bool,
    stream_prefix: str,
    webhook_url: str,
    dashboard_url: str,
    redis_password_file: Path | None = None,
) -> Path:
    """Record this process as the local server of ``data_dir`` (atomically, mode 600)."""
    url, password = without_password(redis_url)
    record = {
        "version": _VERSION,
        "pid": os.getpid(),
        "redis_url": url,
        "redis_password": password,
        "redis_password_file": str(redis_password_file.resolve()) if redis_password_file else None,
        "redis_cluster": redis_cluster,
        "stream_prefix": stream_prefix,
        "webhook_url": webhook_url,
        "dashboard_url": dashboard_url,
        "data_dir": str(data_dir.resolve()),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / RECORD_NAME
    # mkstemp makes the file mode 600: only this user reads where the password is.
    fd, temp = tempfile.mkstemp(dir=data_dir, prefix=".server-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=2)
            handle.write("\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def remove(data_dir: Path) -> None:
    """Remove the record of ``data_dir`` if this process wrote it."""
    path = data_dir / RECORD_NAME
    try:
        server = read(path)
    except (OSError, ValueError):
        return
    if server is not None and server.pid == os.getpid():
        path.unlink(missing_ok=True)


def read(path: Path) -> LocalServer | None:
    """The record at ``path``, or None when there is none; ``ValueError`` when unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return LocalServer(
            path=path,
            pid=int(data["pid"]),
            redis_url=str(data["redis_url"]),
            redis_password=bool(data.get("redis_password", False)),
            redis_password_file=(
                Path(data["redis_password_file"]) if data.get("redis_password_file") else None
            ),
            redis_cluster=bool(data.get("redis_cluster", False)),
            stream_prefix=str(data.get("stream_prefix", "voucherify")),
            webhook_url=str(data.get("webhook_url", "")),
            dashboard_url=str(data.get("dashboard_url", "")),
            started_at=str(data.get("started_at", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{_short(path)} is not a server record ({exc})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _short(path: Path) -> str:
    """``path`` relative to the working folder when under it, for messages."""
    here = Path.cwd()
    try:
        return str(path.resolve().relative_to(here)) if here.parent != here else str(path)
    except ValueError:
        return str(path)


class AlreadyServing(FanoutError, RuntimeError):
    """Another ``fanout serve`` holds the data folder; ``str()`` is one line."""


class Claim:
    """This process's hold on a data folder: an exclusive ``flock`` on ``serve.lock``.

    The kernel drops the lock when the process ends, however it ends, so a
    killed server never leaves the folder claimed.
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._fd: int | None = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise AlreadyServing(self._taken_message()) from None

    def _taken_message(self) -> str:
        try:
            other = read(self.data_dir / RECORD_NAME)
        except (OSError, ValueError):
            other = None
        who = "another `fanout serve`"
        if other is not None and other.running:
            who += f" (pid {other.pid}, webhook URL {other.webhook_url})"
        return (
            f"{who} already uses the data folder {_short(self.data_dir)}: stop it, "
            "or give this one another --data-dir (FANOUT_DATA_DIR)"
        )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --- finding it ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Search:
    """The outcome of looking for a running local server."""

    server: LocalServer | None
    looked: tuple[Path, ...]
    notes: tuple[str, ...]

    def where(self) -> str:
        """Where it looked, for a message."""
        return ", ".join(_short(path) for path in self.looked)


def data_dirs(data_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The folders to look in: the given one, ``FANOUT_DATA_DIR``, else ``.fanout`` upwards.

    ``environ`` defaults to this process's environment (``config.discovery``).
    """
    configured = data_dir or discovery(environ).data_dir
    if configured is not None:
        return [configured]
    here = Path.cwd()
    return [folder / DATA_DIR for folder in (here, *here.parents)]


def find_server(data_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> Search:
    """The running local server of ``data_dir`` (or of the folders ``data_dirs`` lists)."""
    looked: list[Path] = []
    notes: list[str] = []
    for folder in data_dirs(data_dir, environ):
        path = folder / RECORD_NAME
        looked.append(path)
        try:
            server = read(path)
        except (OSError, ValueError) as exc:
            notes.append(f"ignored {_short(path)}: {exc}")
            continue
        if server is None:
            continue
        if not server.running:
            notes.append(
                f"ignored {_short(path)}: its server (pid {server.pid}) is no longer running"
            )
            continue
        return Search(server, tuple(looked), tuple(notes))
    return Search(None, tuple(looked), tuple(notes))


def server_url(server: LocalServer) -> str:
    """The local server's Redis URL with its password (read from its password file).

    Raises ``NoRedis`` when the URL needs a password that no file keeps (a
    configured Redis: its URL is in ``FANOUT_REDIS_URL``) or the file is unreadable.
    """
    if not server.redis_password:
        return server.redis_url
    if server.redis_password_file is None:
        raise NoRedis(
            f"{server.describe()} uses {server.redis_url} with a password, which its record "
            "does not keep: set FANOUT_REDIS_URL"
        )
    try:
        password = server.redis_password_file.read_text().strip()
    except OSError as exc:
        raise NoRedis(
            f"{server.describe()} keeps its Redis password in {server.redis_password_file}, "
            f"which cannot be read ({exc.strerror}): run as the user of that server, "
            "or set FANOUT_REDIS_URL"
        ) from None
    return with_password(server.redis_url, password)


def find_redis(
    url: str | None = None,
    *,
    data_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    given_as: str = "--redis-url",
) -> RedisTarget:
    """The Redis to use: ``url``, else ``FANOUT_REDIS_URL``, else the local server's.

    ``given_as`` names where ``url`` came from (a flag, an argument). Raises
    ``NoRedis`` with a message that says where it looked.
    """
    found = discovery(environ)
    if url:
        return RedisTarget(url, f"from {given_as}", found.redis_cluster)
    if found.redis_url:
        return RedisTarget(found.redis_url, "from FANOUT_REDIS_URL", found.redis_cluster)
    search = find_server(data_dir, environ)
    server = search.server
    if server is None:
        stale = f"; {'; '.join(search.notes)}" if search.notes else ""
        raise NoRedis(
            f"no Redis to connect to: {given_as} and FANOUT_REDIS_URL are not set, and no "
            f"running `fanout serve` was found (looked for {search.where()}{stale}). "
            "Start `fanout serve` here, point FANOUT_DATA_DIR at its data folder, "
            "or set FANOUT_REDIS_URL"
        )
    return RedisTarget(
        server_url(server),
        f"of {server.describe()}",
        server.redis_cluster,
        stream_prefix=server.stream_prefix,
        notes=search.notes,
    )
