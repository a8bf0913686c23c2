"""The checks a request passes before its body is trusted: who, what type, how big."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

from .config import IPNetwork
from .errors import BodyTooLarge, Forbidden, UnsupportedMediaType


def check_client(request: Request, allowed: Sequence[IPNetwork] | None) -> None:
    """Raise ``Forbidden`` unless the peer address is inside one of ``allowed``."""
    if allowed is None:
        return
    host = request.client.host if request.client else None
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        raise Forbidden() from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not any(address in network for network in allowed):
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
