"""The webhook endpoint: bytes -> verified -> decoded action -> publish outcome -> answer.

It is a plain ASGI app mounted on the route (no per-request Response object or
exception-handler wrapping): this is the hot path, and every answer it gives is
rendered by the same ``errors.render`` the rest of the app uses.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import msgspec
from starlette.types import Receive, Scope, Send

from .. import metrics
from ..config import Settings
from ..domain import actions
from ..streams.errors import RedisUnavailable
from ..streams.publisher import Accepted, Conflict, Outcome, Publisher
from . import intake
from .errors import InvalidPayload, MalformedJSON, Problem, Unavailable, render
from .signature import Verifier

logger = logging.getLogger("service")

_JSON = (b"content-type", b"application/json")
_encoder = msgspec.json.Encoder()


class Receiver:
    """``POST /webhooks/voucherify``, with the state it needs, built once per app."""

    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self.verifier = Verifier(secret.key for secret in settings.secrets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            status, body = await self.handle(scope, receive)
            headers = [_JSON]
        except Problem as problem:
            status, headers, body = render(problem)
        except intake.ClientGone:
            return
        finally:
            metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        """The answer's status and JSON body; a ``Problem`` for every refusal."""
        action: actions.AnyAction | None = None
        try:
            head = intake.Head.of(scope)
            intake.check_client(scope, self.settings.allow_ips)
            intake.check_declared_length(head, self.settings.max_body_bytes)
            intake.check_media_type(head)
            body = await intake.read_body(receive, self.settings.max_body_bytes)
            self.verifier.verify(body, head.signatures)
            received_at = datetime.now(UTC)
            action = await self._decode(body, received_at)
            outcome = await self.publisher.publish(action, received_at)
            if isinstance(outcome, Conflict):
                await self.publisher.dead_letter(
                    "conflict",
                    f"same id and request_id as entry {outcome.entry_id}, different content",
                    body,
                    received_at,
                )
        except RedisUnavailable as exc:
            unavailable = Unavailable()
            _refused(unavailable, action, exc.__cause__ or exc)
            raise unavailable from exc
        except Problem as problem:
            _refused(problem, action, problem.__cause__)
            raise
        if isinstance(outcome, Accepted) and action.completed:
            failed_count = getattr(action.result, "failed_count", None)
            metrics.completion(action.type, action.status, failed_count)
        metrics.delivery(action.type, type(outcome).__name__.lower())
        return _answer(action, outcome)

    async def _decode(self, body: bytes, received_at: datetime) -> actions.AnyAction:
        try:
            return actions.decode(body)
        except msgspec.ValidationError as exc:
            await self.publisher.dead_letter(
                actions.failure_reason(exc), str(exc), body, received_at
            )
            raise InvalidPayload(str(exc)) from None
        except msgspec.DecodeError as exc:
            # Authenticated, so kept: nothing the sender signed is lost.
            await self.publisher.dead_letter(
                actions.failure_reason(exc), str(exc), body, received_at
            )
            raise MalformedJSON(str(exc)) from None


# Outcome labels of refusals, where they differ from the error code.
_OUTCOMES = {"body_too_large": "too_large"}


def _refused(
    problem: Problem, action: actions.AnyAction | None, cause: BaseException | None
) -> None:
    """Count and log one refusal."""
    outcome = _OUTCOMES.get(problem.error, problem.error)
    metrics.delivery(action.type if action else "unknown", outcome)
    fields = {
        "status": problem.status,
        "outcome": outcome,
        "type": action.type if action else None,
        "id": action.id if action else None,
        "request_id": action.request_id if action else None,
        "detail": problem.detail,
    }
    if problem.status >= 500:
        fields["cause"] = repr(cause) if cause else None
        logger.warning("webhook refused", extra={"fields": fields})
    else:
        logger.info("webhook refused", extra={"fields": fields})


def _answer(action: actions.AsyncAction, outcome: Outcome) -> tuple[int, bytes]:
    if isinstance(outcome, Accepted):
        return 202, _encoder.encode(
            {
                "status": "accepted",
                "id": action.id,
                "stream": outcome.stream,
                "entry_id": outcome.entry_id,
            }
        )
    # Duplicates, conflicts and stale progress all mean: already have it.
    return 200, _encoder.encode(
        {"status": "duplicate", "id": action.id, "entry_id": outcome.entry_id}
    )
