"""Who sent a request when a reverse proxy stands in front: ``X-Forwarded-For``.

The header is believed only from the proxies listed in
``FANOUT_TRUSTED_PROXIES``; a direct client cannot claim another address with
it. ``TrustedProxies`` wraps the app and rewrites the ASGI scope's client, so
``intake.check_client`` (the allowlist) sees the sender's address. From the same
proxies ``X-Forwarded-Proto: https`` makes the scope's scheme https (a
TLS-terminating proxy), so the dashboard's cookie is marked ``Secure``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import IPNetwork

_HEADER = b"x-forwarded-for"
_PROTO = b"x-forwarded-proto"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(text: str, trusted: Sequence[IPNetwork]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in trusted)


def forwarded_client(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str | None:
    """The sender's address as far as it can be trusted.

    ``peer`` itself unless it is inside ``trusted``. From a trusted proxy, the
    ``X-Forwarded-For`` list is read from the right (each proxy appends the
    address it saw) and the first address that is not a trusted proxy is the
    sender; anything left of it was written by the client and is ignored. An
    entry that is not an IP address is returned as is, so the allowlist refuses it.
    """
    if peer is None or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def behind_proxies(app: ASGIApp, trusted: Sequence[IPNetwork]) -> ASGIApp:
    """``app`` as served: behind ``TrustedProxies`` when there are trusted proxies, else
    itself (no layer per request that would only pass it on)."""
    return TrustedProxies(app, trusted) if trusted else app


class TrustedProxies:
    """ASGI middleware: the request's client becomes ``forwarded_client(...)``.

    Without trusted proxies it passes every request through untouched.
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] == "http":
            client = scope.get("client")
            peer = client[0] if client else None
            forwarded = [v.decode("latin-1") for n, v in scope["headers"] if n == _HEADER]
            host = forwarded_client(peer, forwarded, self.trusted)
            if host != peer:
                scope = {**scope, "client": (host, 0)}
            if peer is not None and _trusted(peer, self.trusted):
                scheme = forwarded_scheme([v for n, v in scope["headers"] if n == _PROTO])
                if scheme is not None:
                    scope = {**scope, "scheme": scheme}
        await self.app(scope, receive, send)


def forwarded_scheme(values: Sequence[bytes]) -> str | None:
    """``http`` or ``https`` as the nearest proxy wrote it (the last entry); else None."""
    hops = [hop.strip().lower() for value in values for hop in value.split(b",")]
    if hops and hops[-1] in (b"http", b"https"):
        return hops[-1].decode()
    return None
