"""Settings: one frozen object built from the environment at start-up.

Every variable of the contract is read here and nowhere else. A bad value stops
start-up with a ``ConfigError`` whose message names the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from .sentinel_url import SENTINEL_SCHEMES as SENTINEL_SCHEMES
from .sentinel_url import SentinelTarget as SentinelTarget

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A configuration value is invalid; ``str()`` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class Secret:
    """A webhook secret that never prints."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @property
    def key(self) -> bytes:
        return self._value.encode("utf-8")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


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


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = None
    redis_cluster: bool = False
    secrets: tuple[Secret, ...] = ()
    stream_prefix: str = "voucherify"
    dedup_ttl: int = 604_800
    stream_maxlen: int = 1_000_000
    max_body_bytes: int = 1_048_576
    allow_ips: tuple[IPNetwork, ...] | None = None
    trusted_proxies: tuple[IPNetwork, ...] = ()
    durability: Durability = field(default_factory=Durability)
    data_dir: Path = Path(".fanout")
    host: str = "127.0.0.1"
    port: int = 8000
    redis_timeout: float = 2.0
    admin_token: Secret | None = None
    #: ``Host`` values ``/dashboard`` answers to; ``None``: ``dashboard_hosts()``'s default.
    allowed_hosts: tuple[str, ...] | None = None
    cloudevents: bool = False

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
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return None if value is None or value.strip() == "" else value.strip()

        default = cls()
        redis_url = _redis_url(get("FANOUT_REDIS_URL"))
        redis_cluster = _flag("FANOUT_REDIS_CLUSTER", get("FANOUT_REDIS_CLUSTER"))
        if redis_cluster and redis_url and redis_url.startswith(SENTINEL_SCHEMES):
            raise ConfigError("FANOUT_REDIS_CLUSTER", "1 does not go with a redis+sentinel:// URL")
        return cls(
            redis_url=redis_url,
            redis_cluster=redis_cluster,
            secrets=_secrets(get("FANOUT_SECRETS")),
            stream_prefix=_prefix(get("FANOUT_STREAM_PREFIX") or default.stream_prefix),
            dedup_ttl=_positive_int("FANOUT_DEDUP_TTL", get("FANOUT_DEDUP_TTL"), default.dedup_ttl),
            stream_maxlen=_positive_int(
                "FANOUT_STREAM_MAXLEN", get("FANOUT_STREAM_MAXLEN"), default.stream_maxlen
            ),
            max_body_bytes=_positive_int(
                "FANOUT_MAX_BODY_BYTES", get("FANOUT_MAX_BODY_BYTES"), default.max_body_bytes
            ),
            allow_ips=_networks("FANOUT_ALLOW_IPS", get("FANOUT_ALLOW_IPS")),
            trusted_proxies=_networks("FANOUT_TRUSTED_PROXIES", get("FANOUT_TRUSTED_PROXIES"))
            or (),
            durability=_durability(get("FANOUT_DURABILITY")),
            data_dir=Path(get("FANOUT_DATA_DIR") or default.data_dir),
            host=get("FANOUT_HOST") or default.host,
            port=_port(get("FANOUT_PORT"), default.port),
            redis_timeout=_positive_float(
                "FANOUT_REDIS_TIMEOUT", get("FANOUT_REDIS_TIMEOUT"), default.redis_timeout
            ),
            admin_token=_admin_token(get("FANOUT_ADMIN_TOKEN")),
            allowed_hosts=_hosts(get("FANOUT_ALLOWED_HOSTS")),
            cloudevents=_flag("FANOUT_CLOUDEVENTS", get("FANOUT_CLOUDEVENTS")),
        )


def _admin_token(value: str | None) -> Secret | None:
    if value is None:
        return None
    if len(value) < 16:
        raise ConfigError("FANOUT_ADMIN_TOKEN", "must be at least 16 characters")
    return Secret(value)


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


def _hosts(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    hosts = tuple(part.strip().lower() for part in value.split(","))
    for host in hosts:
        if host != "*" and parse_host(host) is None:
            raise ConfigError(
                "FANOUT_ALLOWED_HOSTS",
                f"expected comma-separated host, host:port or *, without a scheme; got {host!r}",
            )
    return hosts


def _redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith(SENTINEL_SCHEMES):
        try:
            SentinelTarget.parse(value)
        except ValueError as exc:
            raise ConfigError("FANOUT_REDIS_URL", str(exc)) from None
        return value
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "FANOUT_REDIS_URL",
            f"expected a redis://, rediss://, unix:// or redis+sentinel:// URL, got {value!r}",
        )
    return value


def _flag(name: str, value: str | None) -> bool:
    if value is None or value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ConfigError(name, f"expected 0 or 1, got {value!r}")


def _secrets(value: str | None) -> tuple[Secret, ...]:
    if value is None:
        return ()
    parts = [part.strip() for part in value.split(",")]
    if any(not part for part in parts):
        raise ConfigError("FANOUT_SECRETS", "contains an empty secret (check the commas)")
    return tuple(Secret(part) for part in parts)


def _prefix(value: str) -> str:
    if any(ch in value for ch in "{}: \t\r\n"):
        raise ConfigError(
            "FANOUT_STREAM_PREFIX", f"must not contain braces, colons or spaces, got {value!r}"
        )
    return value


def _positive_int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise ConfigError(name, f"expected a positive integer, got {value!r}")
    return number


def _positive_float(name: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {value!r}") from None
    if not 0 < number < 3600:
        raise ConfigError(name, f"expected a number of seconds above 0, got {value!r}")
    return number


def _port(value: str | None, default: int) -> int:
    port = _positive_int("FANOUT_PORT", value, default)
    if port > 65535:
        raise ConfigError("FANOUT_PORT", f"expected a port from 1 to 65535, got {value!r}")
    return port


def _networks(name: str, value: str | None) -> tuple[IPNetwork, ...] | None:
    if value is None:
        return None
    networks = []
    for part in value.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                name, f"expected comma-separated CIDRs, got {part.strip()!r}"
            ) from None
    return tuple(networks)


def _durability(value: str | None) -> Durability:
    if value is None or value == "auto":
        return Durability()
    if value == "none":
        return Durability("none")
    if value == "aof":
        return Durability("aof")
    if value.startswith("replicas:"):
        count = value.removeprefix("replicas:")
        if count.isdigit() and int(count) > 0:
            return Durability("replicas", int(count))
    raise ConfigError("FANOUT_DURABILITY", f"expected auto, none, aof or replicas:N, got {value!r}")


# --- the reconciler (``fanout poll``) ----------------------------------------

DEFAULT_API_URL = "https://api.voucherify.io"


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How ``fanout poll`` (and ``fanout serve --poll``) reaches the Voucherify API.

    The app token is a ``Secret``: it is sent as a header and never printed.
    """

    api_url: str = DEFAULT_API_URL
    app_id: str | None = None
    app_token: Secret | None = None
    enabled: bool = False
    interval: float = 60.0
    rate: float = 10.0
    page_size: int = 100
    timeout: float = 10.0

    @property
    def configured(self) -> bool:
        return self.app_id is not None and self.app_token is not None

    def require_credentials(self, why: str) -> None:
        """Raise a ``ConfigError`` naming the first missing credential."""
        if self.app_id is None:
            raise ConfigError("FANOUT_VOUCHERIFY_APP_ID", f"not set; it is required {why}")
        if self.app_token is None:
            raise ConfigError("FANOUT_VOUCHERIFY_APP_TOKEN", f"not set; it is required {why}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PollSettings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return None if value is None or value.strip() == "" else value.strip()

        default = cls()
        token = get("FANOUT_VOUCHERIFY_APP_TOKEN")
        return cls(
            api_url=_api_url(get("FANOUT_VOUCHERIFY_API_URL") or default.api_url),
            app_id=get("FANOUT_VOUCHERIFY_APP_ID"),
            app_token=None if token is None else Secret(token),
            enabled=_flag("FANOUT_POLL", get("FANOUT_POLL")),
            interval=_positive_float(
                "FANOUT_POLL_INTERVAL", get("FANOUT_POLL_INTERVAL"), default.interval
            ),
            rate=_positive_float("FANOUT_POLL_RATE", get("FANOUT_POLL_RATE"), default.rate),
            page_size=_page_size(get("FANOUT_POLL_PAGE_SIZE"), default.page_size),
            timeout=_positive_float(
                "FANOUT_VOUCHERIFY_TIMEOUT", get("FANOUT_VOUCHERIFY_TIMEOUT"), default.timeout
            ),
        )


def _api_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ConfigError(
            "FANOUT_VOUCHERIFY_API_URL",
            f"expected the API's base URL such as {DEFAULT_API_URL} or "
            f"https://us1.api.voucherify.io, got {value!r}",
        )
    return value.rstrip("/")


def _page_size(value: str | None, default: int) -> int:
    size = _positive_int("FANOUT_POLL_PAGE_SIZE", value, default)
    if size > 100:
        raise ConfigError("FANOUT_POLL_PAGE_SIZE", f"expected 1 to 100, got {value!r}")
    return size
