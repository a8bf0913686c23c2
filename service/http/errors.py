"""Every failure a request can meet, mapped to one HTTP answer in one place.

``Problem`` and its subclasses fix the status and the ``error`` code of each
refusal; the whole exception tree of the service, with where each one ends, is
the docstring of ``service.errors``. ``EXCEPTION_HANDLERS`` is the table
Starlette uses; the webhook receiver, a plain ASGI app on the hot path, renders
the same ``Problem`` classes with ``render``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import msgspec
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import FanoutError
from ..streams.errors import RedisUnavailable, StreamFull

RETRY_AFTER_SECONDS = 2
#: A full stream empties as fast as its consumers work: ask for a longer pause.
FULL_RETRY_AFTER_SECONDS = 30


class Problem(FanoutError):
    """A request that cannot be accepted; subclasses fix the status and error code.

    Only what is not authentic or cannot be read is refused: an authentic body
    that cannot be published is a dead letter, answered 200 (``receiver``).
    """

    status: ClassVar[int] = 500
    error: ClassVar[str] = "internal_error"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.error)
        self.detail = detail


class InvalidSignature(Problem):
    status = 401
    error = "invalid_signature"


class Unauthorized(Problem):
    status = 401
    error = "unauthorized"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="fanout dashboard"'}


class Forbidden(Problem):
    status = 403
    error = "forbidden"


class BodyTooLarge(Problem):
    status = 413
    error = "body_too_large"


class UnsupportedMediaType(Problem):
    status = 415
    error = "unsupported_media_type"


class Unavailable(Problem):
    """Redis is unreachable, too slow, or could not confirm durability."""

    status = 503
    error = "unavailable"
    headers: ClassVar[dict[str, str]] = {"Retry-After": str(RETRY_AFTER_SECONDS)}


class BackPressure(Unavailable):
    """The stream holds FANOUT_STREAM_MAXLEN entries a consumer group has not acknowledged:
    nothing is trimmed to make room, the sender retries later."""

    headers: ClassVar[dict[str, str]] = {"Retry-After": str(FULL_RETRY_AFTER_SECONDS)}


def json_response(
    content: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(msgspec.json.encode(content), status, headers, media_type="application/json")


def render(problem: Problem) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, raw headers and JSON body of the answer to ``problem``."""
    body: dict[str, str] = {"error": problem.error}
    if problem.detail is not None:
        body["detail"] = problem.detail
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    return problem.status, headers, msgspec.json.encode(body)


def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    status, headers, body = render(exc)
    return Response(body, status, {name.decode(): value.decode() for name, value in headers})


def _unavailable(request: Request, exc: Exception) -> Response:
    # Redis failures are a 503 with Retry-After, never a 500: RedisUnavailable
    # from the streams core, and any RedisError as a safety net.
    return _problem(request, Unavailable())


def _back_pressure(request: Request, exc: Exception) -> Response:
    return _problem(request, BackPressure(str(exc)))


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return json_response({"error": error}, exc.status_code, exc.headers)


EXCEPTION_HANDLERS = {
    Problem: _problem,
    RedisUnavailable: _unavailable,
    StreamFull: _back_pressure,
    RedisError: _unavailable,
    HTTPException: _http_error,
}
