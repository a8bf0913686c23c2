"""The checks a request passes before its body is trusted: who, what type, how big.

They read the ASGI scope directly: the headers are scanned once into a ``Head``
rather than through a request object, because this runs for every delivery.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Receive, Scope

from ..config import IPNetwork
from ..errors import FanoutError
from .errors import BodyTooLarge, Forbidden, UnsupportedMediaType
from .signature import HEADER

_SIGNATURE = HEADER.encode()


class ClientGone(FanoutError):
    """The sender disconnected before its body arrived; there is no one to answer."""


def head_of(scope: Scope) -> tuple[bytes, bytes | None, list[str]]:
    """The request headers the receiver looks at, from one pass over the scope: the
    content type, the declared length (None: none) and every signature header's value."""
    content_type, declared, signatures = b"", None, []
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            declared = value
        elif name == _SIGNATURE:
            signatures.append(value.decode("latin-1"))
    return content_type, declared, signatures


def check_client(scope: Scope, allowed: Sequence[IPNetwork] | None) -> None:
    """Raise ``Forbidden`` unless the peer address is inside one of ``allowed``."""
    if allowed is None:
        return
    client = scope.get("client")
    try:
        address = ipaddress.ip_address(client[0] if client else "")
    except ValueError:
        raise Forbidden() from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not any(address in network for network in allowed):
        raise Forbidden()


def check_media_type(content_type: bytes) -> None:
    """Accept ``application/json`` and ``application/*+json``, whatever the parameters."""
    if content_type == b"application/json":  # what nearly every sender sends
        return
    media_type = content_type.split(b";", 1)[0].strip().lower()
    if media_type != b"application/json" and not (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    ):
        raise UnsupportedMediaType()


def check_declared_length(declared: bytes | None, limit: int) -> None:
    """A Content-Length over ``limit`` is refused before any of the body is read."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()


async def read_rest(receive: Receive, first: bytes, limit: int) -> bytes:
    """The whole body whose first chunk is ``first``, refused as soon as more than
    ``limit`` bytes have arrived (the receiver reads a body that came whole itself)."""
    chunks = [first]
    size = len(first)
    if size > limit:
        raise BodyTooLarge()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
