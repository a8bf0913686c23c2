"""Sentinel URLs: what a ``redis+sentinel://`` (or ``rediss+sentinel://``) URL names.

``config`` checks ``FANOUT_REDIS_URL`` with it at start-up and
``streams.connection`` connects through the Sentinels it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        """``ValueError`` naming what is wrong."""
        scheme, _, rest = url.partition("://")
        rest, _, query = rest.partition("?")
        userinfo, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        name, _, db = path.partition("/")
        sentinels = []
        for host in hosts.split(","):
            address, _, port = host.rpartition(":")
            if not address or not port.isdigit():
                raise ValueError(f"expected host:port for each Sentinel, got {host!r}")
            sentinels.append((address.strip("[]"), int(port)))
        if not name:
            raise ValueError("the master's name is missing (redis+sentinel://host:port/NAME)")
        if db and not db.isdigit():
            raise ValueError(f"expected a database number after the master's name, got {db!r}")
        user, _, password = userinfo.partition(":")
        options = parse_qs(query)
        return cls(
            sentinels=tuple(sentinels),
            master=unquote(name),
            db=int(db or 0),
            username=unquote(user) or None,
            password=unquote(password) or None,
            sentinel_password=options.get("sentinel_password", [None])[0],
            ssl=scheme == "rediss+sentinel",
        )
