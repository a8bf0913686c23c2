"""Who may use ``/dashboard``: a token, a ``Host`` the server answers to, same-origin writes.

Access is by a secret, never by address: a same-host proxy or a mesh sidecar
makes every outside request arrive from loopback. ``AdminGuard`` wraps the app
and checks every request whose path is ``/dashboard`` or under it (the page, its
data, its static files, its actions), in this order, before any route sees it:

1. ``Host`` is one of ``Settings.dashboard_hosts()`` (``FANOUT_ALLOWED_HOSTS``),
   or the IP address and port the connection arrived at; else 403. A page that
   DNS-rebinds its own name to this server sends its own name, never an IP.
2. A token: ``Authorization: Bearer …``, ``?token=…`` (the page turns it into a
   cookie) or that cookie; else 401. Without an admin token configured every
   request is refused: ``create_app`` never serves an open dashboard, and
   ``fanout serve`` always has a token (generated when none is set).
3. A method other than GET or HEAD must be same-origin: ``Sec-Fetch-Site``, when
   sent, is ``same-origin``, and ``Origin``, when sent, names this server (its
   ``Host`` or an allowed host); a request with neither header is not from a
   browser and needs the bearer token, never the cookie alone; else 403.

Every other path (the webhook, ``/metrics``, ``/healthz``, ``/readyz``) passes
untouched: senders behind proxies use arbitrary ``Host`` headers.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Secret, Settings, parse_host
from .errors import Forbidden, Problem, Unauthorized, render

PREFIX = "/dashboard"
COOKIE = "fanout_admin"
SAFE_METHODS = frozenset({"GET", "HEAD"})
DEFAULT_PORTS = {"http": 80, "https": 443}
NO_TOKEN = (
    "the dashboard needs an admin token: set FANOUT_ADMIN_TOKEN "
    "(fanout serve generates one and prints the dashboard URL when it is unset)"
)

Authority = tuple[str, int]


def under_dashboard(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class AdminGuard:
    """ASGI middleware: refuse a request under ``/dashboard`` that fails a check above."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self._token = settings.admin_token
        entries = settings.dashboard_hosts()
        self._any_host = "*" in entries
        self._hosts = {host for entry in entries if (host := parse_host(entry)) is not None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and under_dashboard(scope["path"]):
            try:
                self.check(Request(scope))
            except Problem as problem:
                status, headers, body = render(problem)
                headers.append((b"cache-control", b"no-store"))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def check(self, request: Request) -> None:
        """Raise the ``Problem`` that refuses ``request``; return when it may pass."""
        host = request.headers.get("host", "")
        if not self._host_allowed(host, request):
            raise Forbidden(
                f"Host {host!r} is not one this dashboard answers to; "
                "add it to FANOUT_ALLOWED_HOSTS"
            )
        if self._token is None:
            raise Unauthorized(NO_TOKEN)
        bearer = _valid_bearer(request, self._token)
        if not (bearer or _valid_cookie_or_query(request, self._token)):
            raise Unauthorized("a valid admin token is required")
        if request.method not in SAFE_METHODS:
            self._same_origin(request, host, bearer)

    def _host_allowed(self, host: str, request: Request) -> bool:
        if self._any_host:
            return True
        parsed = parse_host(host)
        if parsed is None:
            return False
        name, port = parsed
        authority = (name, port or DEFAULT_PORTS.get(request.url.scheme, 80))
        return self._listed(authority) or authority == _arrived_at(request)

    def _listed(self, authority: Authority) -> bool:
        return authority in self._hosts or (authority[0], None) in self._hosts

    def _same_origin(self, request: Request, host: str, bearer: bool) -> None:
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        if site is not None and site != "same-origin":
            raise Forbidden(f"a {site} request may not change anything here")
        if origin is not None:
            if not self._own_origin(origin, host):
                raise Forbidden(
                    f"Origin {origin!r} is not this dashboard's; "
                    "add its host to FANOUT_ALLOWED_HOSTS if it is"
                )
        elif site is None and not bearer:
            raise Forbidden(
                "a request without Origin or Sec-Fetch-Site (not from a browser) "
                "needs Authorization: Bearer <admin token>"
            )

    def _own_origin(self, origin: str, host: str) -> bool:
        """True when ``origin`` names this server: its ``Host``, or an allowed host."""
        parts = urlsplit(origin)
        if parts.scheme not in DEFAULT_PORTS:
            return False  # "null" and anything else that is not a web origin
        default = DEFAULT_PORTS[parts.scheme]
        theirs = parse_host(parts.netloc)
        ours = parse_host(host)
        if theirs is None or ours is None:
            return False
        # Host carries no scheme: a TLS-terminating proxy may pass https as http.
        authority = (theirs[0], theirs[1] or default)
        return authority == (ours[0], ours[1] or default) or self._listed(authority)


def _valid_bearer(request: Request, token: Secret) -> bool:
    scheme, _, offered = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and _same(offered.strip(), token)


def _valid_cookie_or_query(request: Request, token: Secret) -> bool:
    offered = (request.query_params.get("token"), request.cookies.get(COOKIE))
    return any(value is not None and _same(value, token) for value in offered)


def _same(offered: str, token: Secret) -> bool:
    return hmac.compare_digest(offered.encode(), token.key)


def _arrived_at(request: Request) -> Authority | None:
    """The IP address and port this connection was accepted on, as a ``Host`` names them."""
    server = request.scope.get("server")
    if not server or server[1] is None:
        return None
    try:
        address = ipaddress.ip_address(server[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is None:
            return f"[{address.compressed}]", int(server[1])
        address = address.ipv4_mapped
    return str(address), int(server[1])
