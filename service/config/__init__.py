"""Configuration: the settings objects, their parsers, and the webhook secrets.

``service.config`` is what the rest of the service imports; the names live in
three modules, each one concern:

- ``settings.py``: ``Settings`` (the receiver), ``PollSettings`` (the reconciler),
  ``discovery()`` (how the consumer library and the operator commands find a
  running server), and the one declaration per setting (``setting(...)``) that
  ``from_env`` reads and ``to_env`` writes back. The only module of the service
  that reads the environment (its docstring lists the exceptions).
- ``parsers.py``: ``ConfigError`` and the parsers ``(variable, text) -> value``,
  with the value types they give (``Durability``, ``IPNetwork``, log levels).
- ``secrets.py``: ``Secret``, the ``FANOUT_SECRETS`` entries, the secrets file
  (``FANOUT_SECRETS_FILE``) and ``webhook_secrets()``, read again on SIGHUP.
"""

from __future__ import annotations

from ..sentinel_url import SENTINEL_SCHEMES, SentinelTarget
from .parsers import (
    DEFAULT_API_URL,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    Durability,
    IPNetwork,
    LogFormat,
    LogLevel,
    parse_host,
)
from .secrets import Secret, read_secrets_file, render_secret, webhook_secrets
from .settings import (
    Discovery,
    PollSettings,
    Settings,
    Variable,
    discovery,
    environment,
    export,
    setting,
    to_env,
    tracing_enabled,
    variables,
)

__all__ = [
    "DEFAULT_API_URL",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SENTINEL_SCHEMES",
    "ConfigError",
    "Discovery",
    "Durability",
    "IPNetwork",
    "LogFormat",
    "LogLevel",
    "PollSettings",
    "Secret",
    "SentinelTarget",
    "Settings",
    "Variable",
    "discovery",
    "environment",
    "export",
    "parse_host",
    "read_secrets_file",
    "render_secret",
    "setting",
    "to_env",
    "tracing_enabled",
    "variables",
    "webhook_secrets",
]
