"""The webhook endpoint: bytes -> verified -> decoded body -> publish outcome -> answer.

A body is an async action (its ``type`` one of the 22) or a webhook event in the
v2024-01-01 envelope (``domain.webhooks``): both are deduplicated and appended
by one script call, answered alike, and refused alike (422 and a dead letter).

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

from .. import logs, metrics
from ..config import Settings
from ..domain import actions, webhooks
from ..domain.webhooks import Inbound, WebhookDelivery
from ..streams.errors import RedisUnavailable, StreamFull
from ..streams.publisher import Accepted, Conflict, Outcome, Publisher
from ..streams.refusals import Refusals
from . import intake
from .errors import BackPressure, InvalidPayload, MalformedJSON, Problem, Unavailable, render
from .signature import Verifier

logger = logging.getLogger("service")
#: One line per delivery, written in blocks under load (``logs.BatchingHandler``).
access_logger = logging.getLogger(logs.ACCESS)

_JSON = (b"content-type", b"application/json")
_encoder = msgspec.json.Encoder()


class Receiver:
    """``POST /webhooks/voucherify``, with the state it needs, built once per app."""

    def __init__(
        self, settings: Settings, publisher: Publisher, refusals: Refusals | None = None
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        #: Per-minute refusal counts for the dashboard (flushed to Redis by the app).
        self.refusals = refusals
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
        """The answer's status and JSON body; a ``Problem`` for every refusal.

        Every answer is logged once at info level (a 503 at warning): status,
        outcome, type, id and duration; never the body or the signature.
        """
        started = time.perf_counter()
        inbound: Inbound | None = None
        try:
            head = intake.Head.of(scope)
            intake.check_client(scope, self.settings.allow_ips)
            intake.check_declared_length(head, self.settings.max_body_bytes)
            intake.check_media_type(head)
            body = await intake.read_body(receive, self.settings.max_body_bytes)
            self.verifier.verify(body, head.signatures)
            received_at = datetime.now(UTC)
            inbound = await self._decode(body, received_at)
            if isinstance(inbound, WebhookDelivery):
                outcome = await self.publisher.publish_event(inbound, received_at)
            else:
                outcome = await self.publisher.publish(inbound, received_at)
            if isinstance(outcome, Conflict):
                await self.publisher.dead_letter(
                    "conflict",
                    f"same id and request_id as entry {outcome.entry_id}, different content",
                    body,
                    received_at,
                )
        except RedisUnavailable as exc:
            unavailable = Unavailable()
            self._count(_refused(scope, unavailable, inbound, exc.__cause__ or exc, started))
            raise unavailable from exc
        except StreamFull as exc:
            # Nothing was trimmed to make room: the sender retries once consumers catch up.
            full = BackPressure(str(exc))
            self._count(_refused(scope, full, inbound, exc, started, outcome="stream_full"))
            raise full from exc
        except Problem as problem:
            self._count(_refused(scope, problem, inbound, problem.__cause__, started))
            raise
        if isinstance(outcome, Accepted):
            if isinstance(inbound, WebhookDelivery):
                if not inbound.schema_valid:
                    metrics.schema_drift(inbound.type)
            elif inbound.completed:
                failed_count = getattr(inbound.result, "failed_count", None)
                metrics.completion(inbound.type, inbound.status, failed_count)
        label = type(outcome).__name__.lower()
        metrics.delivery(inbound.type, label)
        status, body = _answer(inbound.id, outcome)
        if access_logger.isEnabledFor(logging.INFO):  # the fields cost 1 us to gather
            access_logger.info(
                "webhook %s",
                "accepted" if status == 202 else "duplicate",
                extra={"fields": _access(scope, status, label, inbound, started)},
            )
        return status, body

    def _count(self, outcome: str) -> None:
        if self.refusals is not None:
            self.refusals.count(outcome)

    async def _decode(self, body: bytes, received_at: datetime) -> Inbound:
        """The action or event; else the body is dead-lettered (authenticated, so kept:
        nothing the sender signed is lost) and the answer names the letter and its reason."""
        try:
            return webhooks.decode(body)
        except msgspec.DecodeError as exc:
            reason = webhooks.failure_reason(exc)
            filed = await self.publisher.dead_letter(reason, str(exc), body, received_at)
            refused = InvalidPayload if isinstance(exc, msgspec.ValidationError) else MalformedJSON
            raise refused(
                str(exc),
                reason=reason,
                dead_letter=filed.entry_id,
                type_=actions.type_label(body),
            ) from None


# Outcome labels of refusals, where they differ from the error code.
_OUTCOMES = {"body_too_large": "too_large"}
#: The ``type`` label of a delivery whose body was not read or not decoded.
NO_TYPE = "none"


def _access(
    scope: Scope, status: int, outcome: str, inbound: Inbound | None, started: float
) -> dict[str, object]:
    """The fields of a delivery's log line (the access log of the webhook route)."""
    return {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "outcome": outcome,
        "type": inbound.type if inbound else None,
        "id": inbound.id if inbound else None,
        "request_id": inbound.request_id if inbound else None,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _refused(
    scope: Scope,
    problem: Problem,
    inbound: Inbound | None,
    cause: BaseException | None,
    started: float,
    *,
    outcome: str | None = None,
) -> str:
    """Count and log one refusal; its outcome label."""
    outcome = outcome or _OUTCOMES.get(problem.error, problem.error)
    metrics.delivery(inbound.type if inbound else problem.type_ or NO_TYPE, outcome)
    fields = _access(scope, problem.status, outcome, inbound, started) | {"detail": problem.detail}
    if inbound is None and problem.type_ is not None:
        fields["type"] = problem.type_
    if problem.dead_letter is not None:
        fields |= {"reason": problem.reason, "dead_letter": problem.dead_letter}
    if problem.status >= 500:
        fields["cause"] = repr(cause) if cause else None
        logger.warning("webhook refused", extra={"fields": fields})
    else:
        access_logger.info("webhook refused", extra={"fields": fields})
    return outcome


def _answer(id_: str, outcome: Outcome) -> tuple[int, bytes]:
    if isinstance(outcome, Accepted):
        return 202, _encoder.encode(
            {
                "status": "accepted",
                "id": id_,
                "stream": outcome.stream,
                "entry_id": outcome.entry_id,
            }
        )
    # Duplicates, conflicts and stale progress all mean: already have it.
    return 200, _encoder.encode({"status": "duplicate", "id": id_, "entry_id": outcome.entry_id})
