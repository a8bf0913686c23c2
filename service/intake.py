"""The checks a request passes before its body is trusted: who, what type, how big.

Who: the peer address, or, when the peer is a trusted reverse proxy, the
address that proxy reports in ``X-Forwarded-For`` (``TrustedProxies``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import IPNetwork
from .errors import BodyTooLarge, Forbidden, UnsupportedMediaType


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


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
    address = _address(peer or "")
    if address is None or not any(address in network for network in trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = _address(hop)
        if hop_address is None or not any(hop_address in network for network in trusted):
            return hop
    return hops[0] if hops else peer


class TrustedProxies:
    """ASGI middleware: the request's client becomes ``forwarded_client(...)``.

    Without trusted proxies it is a no-op, so a direct client cannot spoof its
    address with an ``X-Forwarded-For`` header of its own.
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] == "http":
            client = scope.get("client")
            peer = client[0] if client else None
            forwarded = [
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"x-forwarded-for"
            ]
            host = forwarded_client(peer, forwarded, self.trusted)
            if host != peer:
                scope = {**scope, "client": (host, 0)}
        await self.app(scope, receive, send)


def check_client(request: Request, allowed: Sequence[IPNetwork] | None) -> None:
    """Raise ``Forbidden`` unless the peer address is inside one of ``allowed``."""
    if allowed is None:
        return
    address = _address(request.client.host if request.client else "")
    if address is None or not any(address in network for network in allowed):
        raise Forbidden()


def check_media_type(request: Request) -> None:
    """Accept ``application/json`` and ``application/*+json``, whatever the parameters."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType()


def check_declared_length(request: Request, limit: int) -> None:
    """A Content-Length over ``limit`` is refused before any of the body is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as more than ``limit`` bytes have arrived."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
