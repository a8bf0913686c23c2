"""Webhook signature: lowercase hex HMAC-SHA256 in ``x-voucherify-signature``.

The sender signs the JSON text with the whitespace outside strings removed. A
body is accepted when the signature matches, for any configured secret, either
the raw bytes (the common case, checked first) or that compact form. Digests are
compared as bytes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

import msgspec

from .errors import InvalidSignature

HEADER = "x-voucherify-signature"
_DIGEST_SIZE = hashlib.sha256().digest_size


def sign(body: bytes, key: bytes) -> str:
    """The signature a sender with ``key`` puts on ``body``."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def compact(body: bytes) -> bytes | None:
    """``body`` with the whitespace outside strings removed; None if it is not JSON."""
    try:
        return msgspec.json.format(body, indent=-1)
    except (msgspec.DecodeError, RecursionError):
        # Nesting deeper than the recursion limit: not a form a sender signs.
        return None


class Verifier:
    """Checks a body against its signature header for a set of secret keys."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        # Keyed once: each check copies the keyed state instead of keying again.
        self._keyed = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)
        if not self._keyed:
            raise ValueError("at least one secret key is required")

    def verify(self, body: bytes, headers: Sequence[str]) -> None:
        """Return if ``body`` is authentic, else raise ``InvalidSignature``.

        ``headers`` holds every value of the signature header in the request.
        """
        if not headers:
            raise InvalidSignature(f"missing {HEADER} header")
        if len(headers) > 1:
            raise InvalidSignature(f"expected one {HEADER} header, got {len(headers)}")
        value = headers[0].strip()
        try:
            expected = bytes.fromhex(value) if len(value) == 2 * _DIGEST_SIZE else b""
        except ValueError:
            expected = b""
        if len(expected) != _DIGEST_SIZE:
            raise InvalidSignature(f"{HEADER} must be {2 * _DIGEST_SIZE} hexadecimal characters")
        if self._matches(body, expected):
            return
        compact_body = compact(body)
        if compact_body not in (None, body) and self._matches(compact_body, expected):
            return
        raise InvalidSignature("signature does not match the body for any configured secret")

    def _matches(self, body: bytes, expected: bytes) -> bool:
        matched = False
        for keyed in self._keyed:
            # Every key is tried, so the time taken does not tell which one matched.
            mac = keyed.copy()
            mac.update(body)
            matched |= hmac.compare_digest(mac.digest(), expected)
        return matched
