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
and a parser ``(variable, text) -> value`` that raises ``ConfigError``
(``parsers.py``; ``secrets.py`` for secrets); the renderer is ``str`` unless
the parser needs another text (``render=``).

What still reads the environment elsewhere, and why:

- ``PROMETHEUS_MULTIPROC_DIR`` (``metrics.py`` reads it; ``cli/serve.py`` sets it
  for its workers): prometheus_client's own variable, which that library reads
  from ``os.environ`` itself, so it must be there, not in a settings object.
- ``COLUMNS`` (``cli/render.py``): the terminal's width, the shell's convention
  that rich follows, not a setting of the service.
- ``OTEL_*`` (``tracing/sdk.py`` reads OTEL_TRACES_EXPORTER, OTEL_SDK_DISABLED and the
  OTLP protocol; the OpenTelemetry SDK reads the rest itself, from ``os.environ``): the
  standard variables of OpenTelemetry, configuring FANOUT_TRACING's exporter. A worker
  of ``fanout serve --workers N`` inherits them with the rest of the environment.
- ``FANOUT_TEST_REDIS_URL`` (``testing/plugin.py``): the server the pytest plugin's
  fixtures use instead of starting an embedded Valkey; a variable of a test run, read
  once per test session, never by the service.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..sentinel_url import SENTINEL_SCHEMES
from . import parsers
from .parsers import DEFAULT_API_URL, ConfigError, Durability, IPNetwork, LogFormat, LogLevel
from .secrets import Secret, parse_admin_token, parse_entries, parse_plain, render_entries

T = TypeVar("T")


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


# --- the receiver (``fanout serve``) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``fanout serve`` and its workers run with; one field per ``FANOUT_*`` variable.

    A new setting is one field here, ``setting(variable, parser, default)``:
    ``from_env``, ``to_env`` (so the workers), and the round-trip test follow.
    """

    redis_url: str | None = setting("FANOUT_REDIS_URL", parsers.redis_url, None)
    redis_cluster: bool = setting(
        "FANOUT_REDIS_CLUSTER", parsers.flag, False, render=parsers.render_flag
    )
    secrets: tuple[Secret, ...] = setting(
        "FANOUT_SECRETS", parse_entries, (), render=render_entries
    )
    #: More secrets, one entry a line, read at start-up and again on SIGHUP (each process).
    secrets_file: Path | None = setting("FANOUT_SECRETS_FILE", parsers.path, None)
    stream_prefix: str = setting("FANOUT_STREAM_PREFIX", parsers.prefix, "voucherify")
    dedup_ttl: int = setting("FANOUT_DEDUP_TTL", parsers.positive_int, 604_800)
    #: Seconds a delivery's own time may lie back before it is held as ``stale``;
    #: ``None``: the dedup window (``age_limit()``).
    max_age: int | None = setting("FANOUT_MAX_AGE", parsers.positive_int, None)
    stream_maxlen: int = setting("FANOUT_STREAM_MAXLEN", parsers.positive_int, 1_000_000)
    max_body_bytes: int = setting("FANOUT_MAX_BODY_BYTES", parsers.positive_int, 1_048_576)
    allow_ips: tuple[IPNetwork, ...] | None = setting(
        "FANOUT_ALLOW_IPS", parsers.networks, None, render=parsers.joined
    )
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        "FANOUT_TRUSTED_PROXIES", parsers.networks, (), render=parsers.joined
    )
    durability: Durability = setting("FANOUT_DURABILITY", parsers.durability, Durability())
    data_dir: Path = setting("FANOUT_DATA_DIR", parsers.path, Path(".fanout"))
    host: str = setting("FANOUT_HOST", parsers.text, "127.0.0.1")
    port: int = setting("FANOUT_PORT", parsers.port, 8000)
    redis_timeout: float = setting("FANOUT_REDIS_TIMEOUT", parsers.positive_float, 2.0)
    admin_token: Secret | None = setting(
        "FANOUT_ADMIN_TOKEN", parse_admin_token, None, render=Secret.reveal
    )
    #: ``Host`` values ``/dashboard`` answers to; ``None``: ``dashboard_hosts()``'s default.
    allowed_hosts: tuple[str, ...] | None = setting(
        "FANOUT_ALLOWED_HOSTS", parsers.hosts, None, render=parsers.joined
    )
    cloudevents: bool = setting(
        "FANOUT_CLOUDEVENTS", parsers.flag, False, render=parsers.render_flag
    )
    #: Spans of every delivery, exported as the ``OTEL_*`` variables say, and the
    #: ``traceparent`` entry field (``service.tracing``; the ``[otel]`` extra).
    tracing: bool = setting("FANOUT_TRACING", parsers.tracing, False, render=parsers.render_flag)
    #: The log of ``fanout serve`` and of each of its workers (``--log-level``, ``--log-format``).
    log_level: LogLevel = setting("FANOUT_LOG_LEVEL", parsers.log_level, "info")
    log_format: LogFormat = setting("FANOUT_LOG_FORMAT", parsers.log_format, "auto")
    # The front door (``http/front_door.py``): what one connection may hold.
    max_head_bytes: int = setting("FANOUT_MAX_HEAD_BYTES", parsers.head_bytes, 32_768)
    head_timeout: float = setting("FANOUT_HEAD_TIMEOUT", parsers.positive_float, 10.0)
    body_timeout: float = setting("FANOUT_BODY_TIMEOUT", parsers.positive_float, 20.0)
    #: Whole seconds, as uvicorn takes it.
    keep_alive_timeout: int = setting("FANOUT_KEEP_ALIVE_TIMEOUT", parsers.positive_int, 5)
    #: Open connections per worker; ``None``: 2,048, or what the file limit allows.
    max_connections: int | None = setting("FANOUT_MAX_CONNECTIONS", parsers.positive_int, None)
    #: Run on a server whose maxmemory-policy may evict any key (allkeys-*): entries may be lost.
    allow_eviction: bool = setting(
        "FANOUT_ALLOW_EVICTION", parsers.flag, False, render=parsers.render_flag
    )
    #: Percent of the server's maxmemory at which deliveries and /readyz get 503.
    memory_limit: int = setting("FANOUT_MEMORY_LIMIT", parsers.percent, 90)
    #: Seconds an entry every consumer group acknowledged is kept; None: the dedup window.
    retention: int | None = setting("FANOUT_RETENTION", parsers.positive_int, None)

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


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """``FANOUT_TRACING`` of ``environ`` (default: this process's), as ``Settings``
    reads it, and nothing else: what a ``Consumer`` given no ``tracing`` argument does."""
    return bool(_read(Settings, environ, ["tracing"]).get("tracing", False))


# --- the reconciler (``fanout poll``) ----------------------------------------


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How ``fanout poll`` (and ``fanout serve --poll``) reaches the Voucherify API.

    The app token is a ``Secret``: it is sent as a header and never printed.
    Declared like ``Settings``: a new setting is one ``setting(...)`` field.
    """

    api_url: str = setting("FANOUT_VOUCHERIFY_API_URL", parsers.api_url, DEFAULT_API_URL)
    app_id: str | None = setting("FANOUT_VOUCHERIFY_APP_ID", parsers.text, None)
    app_token: Secret | None = setting(
        "FANOUT_VOUCHERIFY_APP_TOKEN", parse_plain, None, render=Secret.reveal
    )
    #: FANOUT_POLL: 1 or 0; unset (None): on whenever the API credentials are set.
    enabled: bool | None = setting("FANOUT_POLL", parsers.flag, None, render=parsers.render_flag)
    interval: float = setting("FANOUT_POLL_INTERVAL", parsers.positive_float, 60.0)
    rate: float = setting("FANOUT_POLL_RATE", parsers.positive_float, 10.0)
    page_size: int = setting("FANOUT_POLL_PAGE_SIZE", parsers.page_size, 100)
    timeout: float = setting("FANOUT_VOUCHERIFY_TIMEOUT", parsers.positive_float, 10.0)

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
