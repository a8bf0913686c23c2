"""Webhook secrets: the ``Secret`` that never prints, the entries of
``FANOUT_SECRETS`` (``secret`` or ``proj_<id>=secret``), the secrets file
(``FANOUT_SECRETS_FILE``) and ``webhook_secrets()``, which reads that file again
each time it is called: at start-up and on SIGHUP (the rotation, in
``cli/serve.py`` and ``http/receiver.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from .parsers import ConfigError


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


def parse_entries(name: str, value: str) -> tuple[Secret, ...]:
    """``FANOUT_SECRETS``: comma-separated entries, each ``secret`` or ``proj_<id>=secret``."""
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


def render_entries(value: tuple[Secret, ...]) -> str:
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
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            found += [_entry(part.strip()) for part in line.split(",") if part.strip()]
    if not found:
        raise ConfigError(name, f"{path} holds no secret")
    return _distinct(name, found)


class Sources(Protocol):
    """What ``webhook_secrets`` reads of a ``Settings`` (kept here, so this module
    imports nothing of ``settings.py``, which imports it)."""

    @property
    def secrets(self) -> tuple[Secret, ...]: ...

    @property
    def secrets_file(self) -> Path | None: ...


def webhook_secrets(settings: Sources) -> tuple[Secret, ...]:
    """Every secret that verifies a delivery: ``FANOUT_SECRETS`` and, when set, the
    entries of ``FANOUT_SECRETS_FILE`` read now (``ConfigError`` naming it)."""
    if settings.secrets_file is None:
        return settings.secrets
    found = [*settings.secrets, *read_secrets_file(settings.secrets_file)]
    return _distinct("FANOUT_SECRETS_FILE", found)


def parse_plain(name: str, value: str) -> Secret:
    """A secret taken as it is (the Voucherify app token)."""
    return Secret(value)


def parse_admin_token(name: str, value: str) -> Secret:
    """``FANOUT_ADMIN_TOKEN``: at least 16 characters."""
    if len(value) < 16:
        raise ConfigError(name, "must be at least 16 characters")
    return Secret(value)
