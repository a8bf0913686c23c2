"""Every failure a request can meet, mapped to one HTTP answer in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import msgspec
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

RETRY_AFTER_SECONDS = 2


class Problem(Exception):
    """A request that cannot be accepted; subclasses fix the status and error code."""

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


class Forbidden(Problem):
    status = 403
    error = "forbidden"


class MalformedJSON(Problem):
    status = 400
    error = "malformed_json"


class InvalidPayload(Problem):
    status = 422
    error = "invalid_payload"


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


def _redis_error(request: Request, exc: Exception) -> Response:
    # A safety net: the publish path already turns Redis errors into Unavailable.
    return _problem(request, Unavailable())


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return json_response({"error": error}, exc.status_code, exc.headers)


EXCEPTION_HANDLERS = {
    Problem: _problem,
    RedisError: _redis_error,
    HTTPException: _http_error,
}
