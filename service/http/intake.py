"""The checks a request passes before its body is trusted: who, what type, how big.

They read the ASGI scope directly: the headers are scanned once into a ``Head``
rather than through a request object, because this runs for every delivery.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.types import Receive, Scope

from ..config import IPNetwork
from ..errors import FanoutError
from .errors import BodyTooLarge, Forbidden, UnsupportedMediaType
from .signature import HEADER

_SIGNATURE = HEADER.encode()


class ClientGone(FanoutError):
    """The sender disconnected before its body arrived; there is no one to answer."""


@dataclass(slots=True)
class Head:
    """The request headers the receiver looks at, from one pass over the scope."""

    content_type: bytes = b""
    content_length: bytes | None = None
    signatures: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, scope: Scope) -> Head:
        head = cls()
        for name, value in scope["headers"]:
            if name == b"content-type":
                head.content_type = value
            elif name == b"content-length":
                head.content_length = value
            elif name == _SIGNATURE:
                head.signatures.append(value.decode("latin-1"))
        return head


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


def check_media_type(head: Head) -> None:
    """Accept ``application/json`` and ``application/*+json``, whatever the parameters."""
    media_type = head.content_type.split(b";", 1)[0].strip().lower()
    if media_type != b"application/json" and not (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    ):
        raise UnsupportedMediaType()


def check_declared_length(head: Head, limit: int) -> None:
    """A Content-Length over ``limit`` is refused before any of the body is read."""
    declared = head.content_length
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused as soon as more than ``limit`` bytes have arrived."""
    chunks: list[bytes] = []
    size = 0
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
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
