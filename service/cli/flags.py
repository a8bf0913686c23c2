"""Every flag that stands for an environment variable, declared once.

A flag ``--stream-prefix`` overrides ``FANOUT_STREAM_PREFIX``: the variable is
derived from the flag's name (like uvicorn's ``auto_envvar_prefix``), unless a
flag names another one. Each command picks the flags it takes by name, and
``environ`` gives the environment with the given flags applied, for
``Settings.from_env`` and ``PollSettings.from_env``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass

from ..config import LOG_FORMATS, LOG_LEVELS, ConfigError, PollSettings, Settings, environment

PREFIX = "FANOUT_"


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    help: str
    #: The environment variable the flag overrides, when not derived from its name.
    env: str | None = None
    #: The values argparse accepts, when it checks them itself.
    choices: tuple[str, ...] | None = None

    @property
    def variable(self) -> str:
        return self.env or PREFIX + self.name.removeprefix("--").upper().replace("-", "_")

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")


FLAGS: dict[str, Flag] = {
    flag.name: flag
    for flag in (
        Flag(
            "--redis-url",
            "redis://, rediss://, unix:// or redis+sentinel://host:port[,host:port]/master "
            "URL (default: serve starts an embedded Valkey; the other commands use the "
            "running serve's)",
        ),
        Flag("--redis-cluster", "1 to use the cluster client"),
        Flag("--redis-timeout", "seconds any Redis call may take"),
        Flag("--secrets", "comma-separated webhook secrets; proj_<id>=<secret> binds one"),
        Flag("--secrets-file", "file of more secrets, one a line; SIGHUP reads it again"),
        Flag("--stream-prefix", "prefix of every key"),
        Flag("--dedup-ttl", "seconds a delivery is remembered"),
        Flag(
            "--max-age",
            "seconds a delivery's own time may lie back; older ones are dead-lettered as "
            "stale (default: --dedup-ttl)",
        ),
        Flag("--stream-maxlen", "approximate cap per stream"),
        Flag("--max-body-bytes", "largest accepted body"),
        Flag("--allow-ips", "comma-separated CIDRs allowed to post"),
        Flag("--trusted-proxies", "CIDRs of reverse proxies whose X-Forwarded-For is believed"),
        Flag("--durability", "auto (default), none, aof or replicas:N"),
        Flag(
            "--data-dir",
            "data folder of `fanout serve`: its Valkey, secret and record (default .fanout; "
            "other commands also look in parent folders)",
        ),
        Flag("--host", "listen address"),
        Flag("--port", "listen port"),
        Flag(
            "--admin-token",
            "token for /dashboard (default: one generated and kept in the data directory)",
        ),
        Flag(
            "--allowed-hosts",
            "comma-separated Host names /dashboard answers to "
            "(default: the listen host, localhost, 127.0.0.1, [::1] on the listen port)",
        ),
        Flag("--cloudevents", "1 to add a CloudEvents 1.0 `data` field to every event entry"),
        Flag(
            "--tracing",
            "1 for OpenTelemetry spans of each delivery, exported as the OTEL_* variables say, "
            "and a `traceparent` field in every entry (needs the [otel] extra)",
        ),
        Flag(
            "--log-level",
            "info: one line per delivery and per refusal (default)",
            choices=LOG_LEVELS,
        ),
        Flag(
            "--log-format",
            "JSON lines, readable text, or auto (default): text on a terminal, JSON otherwise",
            choices=LOG_FORMATS,
        ),
        Flag("--max-head-bytes", "largest request line and headers, together (431 above)"),
        Flag("--head-timeout", "seconds a request head may take to arrive (408 after)"),
        Flag("--body-timeout", "seconds a body may take to arrive after its head (408 after)"),
        Flag("--keep-alive-timeout", "seconds an idle kept-alive connection stays open"),
        Flag(
            "--max-connections",
            "open connections per worker; at the cap the longest-waiting idle one is "
            "closed (default 2048, or what the file limit allows)",
        ),
        Flag(
            "--allow-eviction",
            "1 to run on a server whose maxmemory-policy is allkeys-*: entries may be lost",
        ),
        Flag(
            "--memory-limit",
            "percent of the server's maxmemory above which deliveries get 503 (default 90)",
        ),
        Flag(
            "--retention",
            "seconds an acknowledged entry is kept (default: FANOUT_DEDUP_TTL)",
        ),
        # The reconciler's; its app token is read from the environment only (a
        # flag would show it in the process list).
        Flag("--api-url", "API base URL of your region", env="FANOUT_VOUCHERIFY_API_URL"),
        Flag("--app-id", "application id (the token: env only)", env="FANOUT_VOUCHERIFY_APP_ID"),
        Flag("--api-timeout", "seconds one API request may take", env="FANOUT_VOUCHERIFY_TIMEOUT"),
        Flag("--interval", "seconds between passes of the daemon", env="FANOUT_POLL_INTERVAL"),
        Flag("--rate", "most API requests per second", env="FANOUT_POLL_RATE"),
        Flag("--page-size", "actions per list request, 1 to 100", env="FANOUT_POLL_PAGE_SIZE"),
    )
}

#: What every command that reads Redis takes.
REDIS = ("--redis-url", "--redis-cluster", "--stream-prefix")
SERVE = (
    *REDIS,
    "--secrets",
    "--secrets-file",
    "--dedup-ttl",
    "--max-age",
    "--stream-maxlen",
    "--max-body-bytes",
    "--allow-ips",
    "--trusted-proxies",
    "--durability",
    "--data-dir",
    "--host",
    "--port",
    "--redis-timeout",
    "--admin-token",
    "--allowed-hosts",
    "--cloudevents",
    "--tracing",
    "--log-level",
    "--log-format",
    "--max-head-bytes",
    "--head-timeout",
    "--body-timeout",
    "--keep-alive-timeout",
    "--max-connections",
    "--allow-eviction",
    "--memory-limit",
    "--retention",
)
TOOLS = (*REDIS, "--data-dir")
POLL = (
    "--api-url",
    "--app-id",
    "--interval",
    "--rate",
    "--page-size",
    "--api-timeout",
    "--cloudevents",
    *TOOLS,
)


def add(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add the flags ``names`` to ``parser``; each help ends with its variable."""
    for name in names:
        flag = FLAGS[name]
        parser.add_argument(name, help=f"{flag.help} [{flag.variable}]", choices=flag.choices)


def environ(args: argparse.Namespace) -> dict[str, str]:
    """The environment, with every flag given on the command line overriding its variable."""
    given = {flag.variable: getattr(args, flag.dest, None) for flag in FLAGS.values()}
    return environment({name: str(value) for name, value in given.items() if value is not None})


def blame(args: argparse.Namespace, error: ConfigError) -> ConfigError:
    """``error`` naming the flag instead of its variable when the value came from the flag."""
    for flag in FLAGS.values():
        if flag.variable == error.variable and getattr(args, flag.dest, None) is not None:
            return ConfigError(flag.name, error.problem)
    return error


def settings(args: argparse.Namespace) -> Settings:
    """``Settings`` from the environment and the flags; a bad value names where it came from."""
    try:
        return Settings.from_env(environ(args))
    except ConfigError as exc:
        raise blame(args, exc) from None


def poll_settings(args: argparse.Namespace) -> PollSettings:
    """``PollSettings`` likewise."""
    try:
        return PollSettings.from_env(environ(args))
    except ConfigError as exc:
        raise blame(args, exc) from None


def positive(value: str) -> int:
    """An argparse type: an integer of at least 1."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)
