"""Settings: frozen objects read from the environment at start-up, and written back.

Every variable of the contract is read here and nowhere else: ``Settings`` (the
receiver), ``PollSettings`` (the reconciler) and ``discovery()`` (how the
consumer library and the operator commands find a running server). A bad value
stops start-up with a ``ConfigError`` whose message names the variable.

Each setting is declared once, as a field with its variable and its parser
(``setting(...)``): ``from_env`` reads every declared field, and ``to_env``
writes each one back as the text its parser reads, so a worker process of
``fanout serve --workers N`` gets the parent's settings whole
(``from_env(to_env(s)) == s``, pinned by a test over every field). Adding a
setting is that one declaration: a field with ``setting("FANOUT_X", parser)``,
and a parser ``(variable, text) -> value`` that raises ``ConfigError``; the
renderer is ``str`` unless the parser needs another text (``render=``).

What still reads the environment elsewhere, and why:

- ``PROMETHEUS_MULTIPROC_DIR`` (``metrics.py`` reads it; ``cli/serve.py`` sets it
  for its workers): prometheus_client's own variable, which that library reads
  from ``os.environ`` itself, so it must be there, not in a settings object.
- ``COLUMNS`` (``cli/render.py``): the terminal's width, the shell's convention
  that rich follows, not a setting of the service.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit

from ..errors import FanoutError
from ..sentinel_url import SENTINEL_SCHEMES as SENTINEL_SCHEMES
from ..sentinel_url import SentinelTarget as SentinelTarget

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


class ConfigError(FanoutError, ValueError):
    """A configuration value is invalid; ``str()`` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class Secret:
    """A webhook secret that never prints; ``project``: the project it is bound to, if any."""

    __slots__ = ("_value", "project")

    def __init__(self, value: str, project: str | None = None) -> None:
        self._value = value
        self.project = project

    @property
    def key(self) -> bytes:
        return self._value.encode("utf-8")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Secret)
            and other._value == self._value
            and other.project == self.project
        )

    def __hash__(self) -> int:
        return hash((self._value, self.project))


@dataclass(frozen=True, slots=True)
class Durability:
    """When a 2xx may be sent.

    ``auto`` (the default): as ``aof`` where the server can confirm it (WAITAOF:
    Redis >= 7.2 or Valkey, with appendonly yes), else as ``none``, said in one
    line at start-up. ``none``: once Redis applied the write. ``aof``: once it is
    in the server's append-only file, refused at start-up by a server that
    cannot tell. ``replicas``: once ``replicas`` replicas have it (WAIT).
    """

    mode: Literal["auto", "none", "aof", "replicas"] = "auto"
    replicas: int = 0

    def __str__(self) -> str:
        return f"replicas:{self.replicas}" if self.mode == "replicas" else self.mode


# --- one declaration per setting ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variable:
    """The environment variable of a field: its name, how it is read and written."""

    name: str
    parse: Callable[[str, str], Any]
    render: Callable[[Any], str] = str


def setting(
    variable: str,
    parse: Callable[[str, str], T],
    default: Any,
    *,
    render: Callable[[Any], str] = str,
) -> Any:
    """A settings field read from ``variable`` by ``parse(variable, text)``.

    ``text`` is the stripped value; an unset or empty variable means ``default``.
    ``render`` writes a value back as a text ``parse`` reads (``to_env``); None is
    written as the empty text, which reads as the default.
    """
    return dataclasses.field(
        default=default, metadata={"variable": Variable(variable, parse, render)}
    )


def variables(cls: type[Any]) -> dict[str, Variable]:
    """Field name -> its ``Variable``, for every field of a settings class."""
    return {f.name: f.metadata["variable"] for f in dataclasses.fields(cls)}


def _read(
    cls: type[Any], environ: Mapping[str, str] | None, names: Iterable[str] | None = None
) -> dict[str, Any]:
    """The fields of ``cls`` (or only ``names``) whose variable is set in ``environ``
    (default: this process's environment), parsed."""
    env = os.environ if environ is None else environ
    declared = variables(cls)
    values: dict[str, Any] = {}
    for name in declared if names is None else names:
        variable = declared[name]
        text = env.get(variable.name, "").strip()
        if text:
            values[name] = variable.parse(variable.name, text)
    return values


def to_env(settings: Any) -> dict[str, str]:
    """Every variable of ``settings`` (a ``Settings`` or ``PollSettings``) as its text.

    The inverse of ``from_env``: reading the result gives ``settings`` back.
    Secrets are written out in clear: the result is for a child process's
    environment, never for a log.
    """
    rendered = {}
    for name, variable in variables(type(settings)).items():
        value = getattr(settings, name)
        rendered[variable.name] = "" if value is None else variable.render(value)
    return rendered


def export(*settings: Any) -> None:
    """Put ``to_env`` of each of ``settings`` into this process's environment, for the
    worker processes it starts next (they read it back with ``from_env``)."""
    for one in settings:
        os.environ.update(to_env(one))


def environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """A copy of this process's environment with ``overrides`` applied (the command's flags)."""
    return {**os.environ, **overrides}


# --- parsers: (variable, stripped text) -> value, or ConfigError naming the variable


def _text(name: str, value: str) -> str:
    return value


def _path(name: str, value: str) -> Path:
    return Path(value)


def _redis_url(name: str, value: str) -> str:
    if value.startswith(SENTINEL_SCHEMES):
        try:
            SentinelTarget.parse(value)
        except ValueError as exc:
            raise ConfigError(name, str(exc)) from None
        return value
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            name,
            f"expected a redis://, rediss://, unix:// or redis+sentinel:// URL, got {value!r}",
        )
    return value


def _flag(name: str, value: str) -> bool:
    if value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ConfigError(name, f"expected 0 or 1, got {value!r}")


def _render_flag(value: bool) -> str:
    return "1" if value else "0"


def _secrets(name: str, value: str) -> tuple[Secret, ...]:
    parts = [part.strip() for part in value.split(",")]
    if any(not part for part in parts):
        raise ConfigError(name, "contains an empty secret (check the commas)")
    return _distinct(name, [_entry(part) for part in parts])


#: ``proj_<id>=<secret>``: a secret bound to one project (Voucherify's project ids).
_BOUND = re.compile(r"(?P<project>proj_[A-Za-z0-9]+)=(?P<secret>.+)", re.DOTALL)


def _entry(text: str) -> Secret:
    """One secret entry: ``secret`` (good for any project) or ``proj_<id>=secret``."""
    bound = _BOUND.fullmatch(text)
    if bound is None:
        return Secret(text)
    return Secret(bound["secret"].strip(), bound["project"])


def render_secret(secret: Secret) -> str:
    """A secret as its entry is written (``proj_<id>=secret`` or the secret)."""
    return f"{secret.project}={secret.reveal()}" if secret.project else secret.reveal()


def _render_secrets(value: tuple[Secret, ...]) -> str:
    return ",".join(render_secret(secret) for secret in value)


def _distinct(name: str, secrets: list[Secret]) -> tuple[Secret, ...]:
    """The entries once each; a secret given for two projects (or bound and plain) is an
    error: which project an envelope it signs may claim would be a guess."""
    bound: dict[str, str | None] = {}
    for secret in secrets:
        other = bound.setdefault(secret.reveal(), secret.project)
        if other != secret.project:
            either = " and ".join(sorted(p or "any project" for p in (other, secret.project)))
            raise ConfigError(name, f"the same secret is given for {either}")
    return tuple(dict.fromkeys(secrets))


def read_secrets_file(path: Path) -> tuple[Secret, ...]:
    """The entries of a secrets file (``FANOUT_SECRETS_FILE``): one a line, or several
    comma-separated; blank lines and lines starting with ``#`` are skipped. A file
    that cannot be read, or holds none, is a ``ConfigError``."""
    name = "FANOUT_SECRETS_FILE"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(name, f"cannot read {path}: {problem}") from None
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries += [_entry(part.strip()) for part in line.split(",") if part.strip()]
    if not entries:
        raise ConfigError(name, f"{path} holds no secret")
    return _distinct(name, entries)


def webhook_secrets(settings: Settings) -> tuple[Secret, ...]:
    """Every secret that verifies a delivery: ``FANOUT_SECRETS`` and, when set, the
    entries of ``FANOUT_SECRETS_FILE`` read now (``ConfigError`` naming it)."""
    if settings.secrets_file is None:
        return settings.secrets
    found = [*settings.secrets, *read_secrets_file(settings.secrets_file)]
    return _distinct("FANOUT_SECRETS_FILE", found)


def _secret(name: str, value: str) -> Secret:
    return Secret(value)


def _admin_token(name: str, value: str) -> Secret:
    if len(value) < 16:
        raise ConfigError(name, "must be at least 16 characters")
    return Secret(value)


def _prefix(name: str, value: str) -> str:
    if any(ch in value for ch in "{}: \t\r\n"):
        raise ConfigError(name, f"must not contain braces, colons or spaces, got {value!r}")
    return value


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise ConfigError(name, f"expected a positive integer, got {value!r}")
    return number


def _positive_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {value!r}") from None
    if not 0 < number < 3600:
        raise ConfigError(name, f"expected a number of seconds above 0, got {value!r}")
    return number


def _head_bytes(name: str, value: str) -> int:
    size = _positive_int(name, value)
    if size < 1024:
        raise ConfigError(name, f"expected a number of bytes of at least 1024, got {value!r}")
    return size


def _percent(name: str, value: str) -> int:
    number = _positive_int(name, value)
    if number > 100:
        raise ConfigError(name, f"expected a percentage from 1 to 100, got {value!r}")
    return number


def _port(name: str, value: str) -> int:
    port = _positive_int(name, value)
    if port > 65535:
        raise ConfigError(name, f"expected a port from 1 to 65535, got {value!r}")
    return port


def _networks(name: str, value: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in value.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                name, f"expected comma-separated CIDRs, got {part.strip()!r}"
            ) from None
    return tuple(networks)


def _joined(values: Iterable[object]) -> str:
    return ",".join(map(str, values))


def _durability(name: str, value: str) -> Durability:
    if value == "auto":
        return Durability()
    if value == "none":
        return Durability("none")
    if value == "aof":
        return Durability("aof")
    if value.startswith("replicas:"):
        count = value.removeprefix("replicas:")
        if count.isdigit() and int(count) > 0:
            return Durability("replicas", int(count))
    raise ConfigError(name, f"expected auto, none, aof or replicas:N, got {value!r}")


#: A ``Host`` value: ``name`` or ``[IPv6 address]``, then an optional ``:port``.
_HOST = re.compile(r"(?P<name>[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` header or an allowed-hosts entry; None when malformed.

    The name is lower-cased, an IPv6 address keeps its brackets, and the port is
    ``None`` when absent.
    """
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port <= 65535:
        return None
    return match["name"], port


def _hosts(name: str, value: str) -> tuple[str, ...]:
    hosts = tuple(part.strip().lower() for part in value.split(","))
    for host in hosts:
        if host != "*" and parse_host(host) is None:
            raise ConfigError(
                name,
                f"expected comma-separated host, host:port or *, without a scheme; got {host!r}",
            )
    return hosts


LogLevel: TypeAlias = Literal["critical", "error", "warning", "info", "debug"]
LOG_LEVELS: tuple[LogLevel, ...] = ("critical", "error", "warning", "info", "debug")
LogFormat: TypeAlias = Literal["auto", "json", "text"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "text")


def _log_level(name: str, value: str) -> LogLevel:
    for level in LOG_LEVELS:
        if value.lower() == level:
            return level
    raise ConfigError(name, f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")


def _log_format(name: str, value: str) -> LogFormat:
    for format_ in LOG_FORMATS:
        if value.lower() == format_:
            return format_
    raise ConfigError(name, f"expected one of {', '.join(LOG_FORMATS)}, got {value!r}")


# --- the receiver (``fanout serve``) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``fanout serve`` and its workers run with; one field per ``FANOUT_*`` variable.

    A new setting is one field here, ``setting(variable, parser, default)``:
    ``from_env``, ``to_env`` (so the workers), and the round-trip test follow.
    """

    redis_url: str | None = setting("FANOUT_REDIS_URL", _redis_url, None)
    redis_cluster: bool = setting("FANOUT_REDIS_CLUSTER", _flag, False, render=_render_flag)
    secrets: tuple[Secret, ...] = setting("FANOUT_SECRETS", _secrets, (), render=_render_secrets)
    #: More secrets, one entry a line, read at start-up and again on SIGHUP (each process).
    secrets_file: Path | None = setting("FANOUT_SECRETS_FILE", _path, None)
    stream_prefix: str = setting("FANOUT_STREAM_PREFIX", _prefix, "voucherify")
    dedup_ttl: int = setting("FANOUT_DEDUP_TTL", _positive_int, 604_800)
    #: Seconds a delivery's own time may lie back before it is held as ``stale``;
    #: ``None``: the dedup window (``age_limit()``).
    max_age: int | None = setting("FANOUT_MAX_AGE", _positive_int, None)
    stream_maxlen: int = setting("FANOUT_STREAM_MAXLEN", _positive_int, 1_000_000)
    max_body_bytes: int = setting("FANOUT_MAX_BODY_BYTES", _positive_int, 1_048_576)
    allow_ips: tuple[IPNetwork, ...] | None = setting(
        "FANOUT_ALLOW_IPS", _networks, None, render=_joined
    )
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        "FANOUT_TRUSTED_PROXIES", _networks, (), render=_joined
    )
    durability: Durability = setting("FANOUT_DURABILITY", _durability, Durability())
    data_dir: Path = setting("FANOUT_DATA_DIR", _path, Path(".fanout"))
    host: str = setting("FANOUT_HOST", _text, "127.0.0.1")
    port: int = setting("FANOUT_PORT", _port, 8000)
    redis_timeout: float = setting("FANOUT_REDIS_TIMEOUT", _positive_float, 2.0)
    admin_token: Secret | None = setting(
        "FANOUT_ADMIN_TOKEN", _admin_token, None, render=Secret.reveal
    )
    #: ``Host`` values ``/dashboard`` answers to; ``None``: ``dashboard_hosts()``'s default.
    allowed_hosts: tuple[str, ...] | None = setting(
        "FANOUT_ALLOWED_HOSTS", _hosts, None, render=_joined
    )
    cloudevents: bool = setting("FANOUT_CLOUDEVENTS", _flag, False, render=_render_flag)
    #: The log of ``fanout serve`` and of each of its workers (``--log-level``, ``--log-format``).
    log_level: LogLevel = setting("FANOUT_LOG_LEVEL", _log_level, "info")
    log_format: LogFormat = setting("FANOUT_LOG_FORMAT", _log_format, "auto")
    # The front door (``http/front_door.py``): what one connection may hold.
    max_head_bytes: int = setting("FANOUT_MAX_HEAD_BYTES", _head_bytes, 32_768)
    head_timeout: float = setting("FANOUT_HEAD_TIMEOUT", _positive_float, 10.0)
    body_timeout: float = setting("FANOUT_BODY_TIMEOUT", _positive_float, 20.0)
    #: Whole seconds, as uvicorn takes it.
    keep_alive_timeout: int = setting("FANOUT_KEEP_ALIVE_TIMEOUT", _positive_int, 5)
    #: Open connections per worker; ``None``: 2,048, or what the file limit allows.
    max_connections: int | None = setting("FANOUT_MAX_CONNECTIONS", _positive_int, None)
    #: Run on a server whose maxmemory-policy may evict any key (allkeys-*): entries may be lost.
    allow_eviction: bool = setting("FANOUT_ALLOW_EVICTION", _flag, False, render=_render_flag)
    #: Percent of the server's maxmemory at which deliveries and /readyz get 503.
    memory_limit: int = setting("FANOUT_MEMORY_LIMIT", _percent, 90)
    #: Seconds an entry every consumer group acknowledged is kept; None: the dedup window.
    retention: int | None = setting("FANOUT_RETENTION", _positive_int, None)

    @property
    def retention_seconds(self) -> int:
        """FANOUT_RETENTION, by default the dedup window (a duplicate's entry id stays readable)."""
        return self.dedup_ttl if self.retention is None else self.retention

    def age_limit(self) -> int:
        """``FANOUT_MAX_AGE``, else ``FANOUT_DEDUP_TTL``: past it, a replay could be
        published again, so an older delivery over HTTP is a ``stale`` dead letter."""
        return self.dedup_ttl if self.max_age is None else self.max_age

    def dashboard_hosts(self) -> tuple[str, ...]:
        """``FANOUT_ALLOWED_HOSTS``, or the listen host, localhost, 127.0.0.1 and [::1]
        on the listen port."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        host = f"[{self.host}]" if ":" in self.host else self.host.lower()
        names = dict.fromkeys((host, "localhost", "127.0.0.1", "[::1]"))
        return tuple(f"{name}:{self.port}" for name in names)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``FANOUT_*`` variable; unset or empty means the default."""
        settings = cls(**_read(cls, environ))
        if settings.redis_cluster and (settings.redis_url or "").startswith(SENTINEL_SCHEMES):
            raise ConfigError("FANOUT_REDIS_CLUSTER", "1 does not go with a redis+sentinel:// URL")
        return settings


# --- finding a running server (the consumer library, the operator commands) ------


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the environment says about the server to use, each None (or empty) when unset.

    The consumer library (``open_redis``) and the operator commands read these
    and nothing else of the environment: the variables of ``Settings`` with the
    same names, read by the same parsers, so a bad value is refused the same way.
    """

    redis_url: str | None = None
    redis_cluster: bool = False
    stream_prefix: str | None = None
    data_dir: Path | None = None
    host: str | None = None
    port: int | None = None
    secrets: tuple[Secret, ...] = ()


def discovery(environ: Mapping[str, str] | None = None) -> Discovery:
    """``FANOUT_REDIS_URL``, ``FANOUT_REDIS_CLUSTER``, ``FANOUT_STREAM_PREFIX``,
    ``FANOUT_DATA_DIR``, ``FANOUT_HOST``, ``FANOUT_PORT`` and ``FANOUT_SECRETS`` of
    ``environ`` (default: this process's), parsed as ``Settings`` parses them."""
    wanted = {f.name for f in dataclasses.fields(Discovery)}
    return Discovery(**_read(Settings, environ, wanted))


# --- the reconciler (``fanout poll``) ----------------------------------------

DEFAULT_API_URL = "https://api.voucherify.io"


def _api_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ConfigError(
            name,
            f"expected the API's base URL such as {DEFAULT_API_URL} or "
            f"https://us1.api.voucherify.io, got {value!r}",
        )
    return value.rstrip("/")


def _page_size(name: str, value: str) -> int:
    size = _positive_int(name, value)
    if size > 100:
        raise ConfigError(name, f"expected 1 to 100, got {value!r}")
    return size


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How ``fanout poll`` (and ``fanout serve --poll``) reaches the Voucherify API.

    The app token is a ``Secret``: it is sent as a header and never printed.
    Declared like ``Settings``: a new setting is one ``setting(...)`` field.
    """

    api_url: str = setting("FANOUT_VOUCHERIFY_API_URL", _api_url, DEFAULT_API_URL)
    app_id: str | None = setting("FANOUT_VOUCHERIFY_APP_ID", _text, None)
    app_token: Secret | None = setting(
        "FANOUT_VOUCHERIFY_APP_TOKEN", _secret, None, render=Secret.reveal
    )
    #: FANOUT_POLL: 1 or 0; unset (None): on whenever the API credentials are set.
    enabled: bool | None = setting("FANOUT_POLL", _flag, None, render=_render_flag)
    interval: float = setting("FANOUT_POLL_INTERVAL", _positive_float, 60.0)
    rate: float = setting("FANOUT_POLL_RATE", _positive_float, 10.0)
    page_size: int = setting("FANOUT_POLL_PAGE_SIZE", _page_size, 100)
    timeout: float = setting("FANOUT_VOUCHERIFY_TIMEOUT", _positive_float, 10.0)

    @property
    def configured(self) -> bool:
        return self.app_id is not None and self.app_token is not None

    @property
    def active(self) -> bool:
        """Whether ``fanout serve`` runs the reconciler: as FANOUT_POLL says when it is
        set, else whenever FANOUT_VOUCHERIFY_APP_ID and _APP_TOKEN are."""
        return self.configured if self.enabled is None else self.enabled

    def require_credentials(self, why: str) -> None:
        """Raise a ``ConfigError`` naming the first missing credential."""
        if self.app_id is None:
            raise ConfigError("FANOUT_VOUCHERIFY_APP_ID", f"not set; it is required {why}")
        if self.app_token is None:
            raise ConfigError("FANOUT_VOUCHERIFY_APP_TOKEN", f"not set; it is required {why}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PollSettings:
        """Read every ``FANOUT_VOUCHERIFY_*`` and ``FANOUT_POLL*`` variable."""
        return cls(**_read(cls, environ))
