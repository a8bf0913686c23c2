"""The parsers of the settings: ``(variable, stripped text) -> value``, or a
``ConfigError`` naming the variable, with the value types they give.

``settings.py`` names one parser per setting (``setting(variable, parser,
default)``); a parser whose value is not written back by ``str`` has its
renderer here too (``render_flag``, ``joined``). The parsers of secrets are in
``secrets.py``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from ..errors import FanoutError
from ..sentinel_url import SENTINEL_SCHEMES, SentinelTarget

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(FanoutError, ValueError):
    """A configuration value is invalid; ``str()`` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


@dataclass(frozen=True, slots=True)
class Durability:
    """When a 2xx may be sent.

    ``auto`` (the default): as ``aof`` where the server can confirm it (WAITAOF:
    Redis >= 7.2 or Valkey, with appendonly yes), else as ``none``; and where the
    primary has replicas, also once every replica online has it (WAIT N), a 503
    while it has none (``streams/durability.py``); said in one line at start-up.
    ``none``: once Redis applied the write. ``aof``: once it is in the server's
    append-only file, refused at start-up by a server that cannot tell; no
    replica waited for. ``replicas``: once ``replicas`` replicas have it (WAIT).
    """

    mode: Literal["auto", "none", "aof", "replicas"] = "auto"
    replicas: int = 0

    def __str__(self) -> str:
        return f"replicas:{self.replicas}" if self.mode == "replicas" else self.mode


def text(name: str, value: str) -> str:
    return value


def path(name: str, value: str) -> Path:
    return Path(value)


def redis_url(name: str, value: str) -> str:
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


def flag(name: str, value: str) -> bool:
    if value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ConfigError(name, f"expected 0 or 1, got {value!r}")


def render_flag(value: bool) -> str:
    return "1" if value else "0"


def tracing(name: str, value: str) -> bool:
    """A flag whose 1 needs the ``[otel]`` extra installed (looked up in the package
    metadata: nothing of OpenTelemetry is imported here)."""
    on = flag(name, value)
    if on:
        try:
            metadata.version("opentelemetry-sdk")
        except metadata.PackageNotFoundError:
            raise ConfigError(
                name, "1 needs OpenTelemetry: pip install 'voucherify-fanout[otel]'"
            ) from None
    return on


def prefix(name: str, value: str) -> str:
    if any(ch in value for ch in "{}: \t\r\n"):
        raise ConfigError(name, f"must not contain braces, colons or spaces, got {value!r}")
    return value


def positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise ConfigError(name, f"expected a positive integer, got {value!r}")
    return number


def positive_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {value!r}") from None
    if not 0 < number < 3600:
        raise ConfigError(name, f"expected a number of seconds above 0, got {value!r}")
    return number


def head_bytes(name: str, value: str) -> int:
    size = positive_int(name, value)
    if size < 1024:
        raise ConfigError(name, f"expected a number of bytes of at least 1024, got {value!r}")
    return size


def percent(name: str, value: str) -> int:
    number = positive_int(name, value)
    if number > 100:
        raise ConfigError(name, f"expected a percentage from 1 to 100, got {value!r}")
    return number


def port(name: str, value: str) -> int:
    port = positive_int(name, value)
    if port > 65535:
        raise ConfigError(name, f"expected a port from 1 to 65535, got {value!r}")
    return port


def networks(name: str, value: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in value.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                name, f"expected comma-separated CIDRs, got {part.strip()!r}"
            ) from None
    return tuple(networks)


def joined(values: Iterable[object]) -> str:
    return ",".join(map(str, values))


def durability(name: str, value: str) -> Durability:
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


def hosts(name: str, value: str) -> tuple[str, ...]:
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


def log_level(name: str, value: str) -> LogLevel:
    for level in LOG_LEVELS:
        if value.lower() == level:
            return level
    raise ConfigError(name, f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")


def log_format(name: str, value: str) -> LogFormat:
    for format_ in LOG_FORMATS:
        if value.lower() == format_:
            return format_
    raise ConfigError(name, f"expected one of {', '.join(LOG_FORMATS)}, got {value!r}")


DEFAULT_API_URL = "https://api.voucherify.io"


def api_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ConfigError(
            name,
            f"expected the API's base URL such as {DEFAULT_API_URL} or "
            f"https://us1.api.voucherify.io, got {value!r}",
        )
    return value.rstrip("/")


def page_size(name: str, value: str) -> int:
    size = positive_int(name, value)
    if size > 100:
        raise ConfigError(name, f"expected 1 to 100, got {value!r}")
    return size
