"""The AsyncAPI server object: the Redis the service writes to, its password left out.

``GET /asyncapi.json`` names the server in use (``server_of``); the checked-in
``docs/asyncapi.json`` names none, only how to find it (``ANY_SERVER``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..streams.local import without_password

ANY_SERVER = {
    "host": "{host}",
    "protocol": "redis",
    "title": "the Redis the service writes to",
    "description": (
        "This copy of the document names no server. The one in use is named by GET "
        "/asyncapi.json of the running service (host, port and how to authenticate), "
        "and `fanout url` prints its URL: FANOUT_REDIS_URL, or the embedded Valkey "
        "of `fanout serve` on a loopback port with a password kept in "
        "FANOUT_DATA_DIR/redis-password (default .fanout/redis-password)."
    ),
    "variables": {
        "host": {
            "description": "host:port of that server (`fanout url` prints it)",
            "examples": ["127.0.0.1:6379"],
        }
    },
}
PASSWORD = {
    "type": "userPassword",
    "description": (
        "Redis AUTH with a user and password: where the password is kept is in the "
        "server's description; the document never holds it."
    ),
}


def server_of(redis_url: str, cluster: bool, password_file: str | None) -> dict[str, Any]:
    """The AsyncAPI server object of the Redis at ``redis_url``, its password left out.

    ``password_file``: where the password is kept (the embedded Valkey's), said in
    the description; a password of a configured URL is said to be that URL's.
    """
    shown, has_password = without_password(redis_url)
    parts = urlsplit(shown)
    what = "Redis Cluster (any node; the client follows the others)" if cluster else "Redis"
    if parts.scheme == "unix":
        host, pathname = "localhost", parts.path
        where = f"a Unix socket, {parts.path}"
    else:
        host = parts.netloc.rpartition("@")[2]
        pathname = parts.path or "/0"
        where = f"{host}, database {pathname.strip('/') or 0}"
    if parts.scheme.endswith("+sentinel"):
        what = "Redis Sentinel: ask these Sentinels for the master, then connect to it"
    if password_file:
        what = "the embedded Valkey of `fanout serve`, on a loopback port"
        auth = (
            f"Authenticate as user `default` with the password kept in {password_file} "
            "(mode 600: readable by the user that runs `fanout serve`); `fanout url "
            "--password` prints the whole URL."
        )
    elif has_password:
        auth = (
            "Authenticate with the user and password of the service's FANOUT_REDIS_URL "
            "(left out here)."
        )
    else:
        auth = "No password."
    tls = parts.scheme.startswith("rediss")
    server: dict[str, Any] = {
        "host": host,
        "pathname": pathname,
        "protocol": "redis",
        "title": what.split(":")[0].split(",")[0],
        "description": f"{what[0].upper()}{what[1:]}: {where}{' over TLS' if tls else ''}. {auth}",
        "x-redis-url": shown,
        "x-redis-tls": tls,
    }
    if password_file:
        server["x-redis-password-file"] = password_file
    if password_file or has_password:
        server["security"] = [{"$ref": "#/components/securitySchemes/redisPassword"}]
    return server
