"""The webhook endpoint: bytes -> verified -> decoded body -> publish outcome -> answer.

What is refused (4xx) is what is not authentic or cannot be read: a sender
address not allowed, a body too large or not JSON by its content type, a
signature that does not verify. An authentic body is always stored and answered
2xx: ``domain.inbound.decode`` classifies and decodes it (an async action, a
webhook envelope), ``domain.outbound`` makes its event, and the publisher
appends it once (202 accepted, 200 duplicate); a body that cannot be published
is kept as a dead letter, once per body, and answered 200 ``dead_lettered``.
Redis trouble is 503 with Retry-After.

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
from ..config import ConfigError, Settings, webhook_secrets
from ..domain import clock, outbound
from ..domain.custom import CustomBody
from ..domain.inbound import Inbound, Unpublishable, check_age, check_project, decode
from ..domain.webhooks import WebhookDelivery
from ..streams.errors import RedisUnavailable, StreamFull
from ..streams.publisher import Accepted, Conflict, Outcome, Publisher
from ..streams.refusals import DETAIL_CHARS, Refusal, Refusals
from . import intake
from .errors import BackPressure, Problem, Unavailable, render
from .signature import Verifier

logger = logging.getLogger("service")
#: One line per delivery, written in blocks under load (``logs.BatchingHandler``).
access_logger = logging.getLogger(logs.ACCESS)
#: The same lines, written without a ``LogRecord`` where the setup allows (``logs``).
delivery_log = logs.DeliveryLog(access_logger)

_JSON = (b"content-type", b"application/json")
_encoder = msgspec.json.Encoder()

#: The answer to an authentic body kept as a dead letter: a 2xx, so the sender neither
#: retries it nor disables the webhook; 200, not 202: nothing was accepted for processing,
#: the body is stored and waits for an operator (``fanout dlq``).
DEAD_LETTERED_STATUS = 200
DEAD_LETTERED = "dead_lettered"


class Receiver:
    """``POST /webhooks/voucherify``, with the state it needs, built once per app."""

    def __init__(
        self, settings: Settings, publisher: Publisher, refusals: Refusals | None = None
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        #: Per-minute refusal counts for the dashboard (flushed to Redis by the app).
        self.refusals = refusals
        self.verifier = Verifier(webhook_secrets(settings))
        #: Older deliveries are held as ``stale`` (``inbound.check_age``).
        self.max_age = settings.age_limit()

    def reload_secrets(self) -> bool:
        """Read ``FANOUT_SECRETS_FILE`` again (on SIGHUP) and verify with what it holds
        now, beside ``FANOUT_SECRETS``; True when done. A file that cannot be read or
        holds no secret changes nothing: the secrets in use stay, and the log says why."""
        try:
            secrets = webhook_secrets(self.settings)
        except ConfigError as exc:
            logger.error("secrets not reloaded: %s; the previous ones stay in use", exc)
            return False
        # One assignment: a request in flight verifies with the old set or the new one.
        self.verifier = Verifier(secrets)
        bound = sum(1 for secret in secrets if secret.project)
        logger.info("secrets reloaded: %d (%d bound to a project)", len(secrets), bound)
        return True

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
            project = self.verifier.verify(body, head.signatures)
            # Authentic from here on: stored (published or dead-lettered) and answered 2xx,
            # or 503 when Redis cannot take it; never refused.
            received_at = datetime.now(UTC)
            try:
                inbound = decode(body)
                check_project(inbound, project)
                check_age(inbound, received_at, self.max_age)
            except Unpublishable as unpublishable:
                return await self._dead_letter(scope, body, received_at, unpublishable, started)
            outcome = await self.publisher.publish(outbound.publication(inbound, received_at))
            if isinstance(outcome, Conflict):
                await self.publisher.dead_letter(
                    "conflict",
                    f"same id and request_id as entry {outcome.entry_id}, different content",
                    body,
                    received_at,
                )
        except RedisUnavailable as exc:
            unavailable = Unavailable()
            cause = exc.__cause__ or exc
            self._count(
                _refused(scope, unavailable, inbound, cause, started), scope, unavailable, cause
            )
            raise unavailable from exc
        except StreamFull as exc:
            # Nothing was trimmed to make room: the sender retries once consumers catch up.
            full = BackPressure(str(exc))
            label = _refused(scope, full, inbound, exc, started, outcome=exc.outcome)
            self._count(label, scope, full, exc)
            raise full from exc
        except Problem as problem:
            self._count(
                _refused(scope, problem, inbound, problem.__cause__, started), scope, problem, None
            )
            raise
        if isinstance(outcome, Accepted):
            if isinstance(inbound, WebhookDelivery):
                if not inbound.schema_valid:
                    metrics.schema_drift(inbound.type)
            elif not isinstance(inbound, CustomBody) and inbound.completed:
                failed_count = getattr(inbound.result, "failed_count", None)
                metrics.completion(inbound.type, inbound.status, failed_count)
        label = type(outcome).__name__.lower()
        metrics.delivery(inbound.type, label)
        status, answer = _answer(inbound.id, outcome)
        if delivery_log.enabled():  # the fields cost 1 us to gather
            delivery_log.info(
                "webhook accepted" if status == 202 else "webhook duplicate",
                _access(scope, status, label, inbound, started),
            )
        return status, answer

    def _count(
        self, outcome: str, scope: Scope, problem: Problem, cause: BaseException | None
    ) -> None:
        """Count the refusal and keep its details (never the body or a header's value).

        Refusals only (a 2xx never comes here): keeping the details costs about 21 us
        per refusal more than the count alone (timeit, 8 headers, a loaded 2-core
        machine: 0.9-2.4 us -> 22-24 us), against a request that costs hundreds.
        """
        if self.refusals is None:
            return
        self.refusals.count(outcome)
        client = scope.get("client")
        detail = problem.detail or _REFUSAL_DETAIL.get(problem.error, problem.error)
        if cause is not None and problem.status >= 500:
            detail = f"{detail}: {type(cause).__name__}: {cause}"
        self.refusals.note(
            Refusal(
                at=clock.now(),
                status=problem.status,
                reason=outcome,
                detail=detail[:DETAIL_CHARS],
                peer=str(client[0]) if client else "",
                path=scope["path"],
                headers=",".join(
                    dict.fromkeys(name.decode("latin-1") for name, _ in scope["headers"])
                ),
            )
        )

    async def _dead_letter(
        self,
        scope: Scope,
        body: bytes,
        received_at: datetime,
        unpublishable: Unpublishable,
        started: float,
    ) -> tuple[int, bytes]:
        """Keep an authentic body that cannot be published as a dead letter (once per
        body, however often it is resent) and say so: 200, ``dead_lettered``, its reason
        and the letter's id. Counted, logged, never a refusal: a 4xx would make the sender
        retry it for a day and then disable the webhook."""
        reason, detail = unpublishable.reason, unpublishable.detail
        filed = await self.publisher.dead_letter(reason, detail, body, received_at)
        type_ = unpublishable.type_label or NO_TYPE
        metrics.delivery(type_, DEAD_LETTERED)
        letter = {"reason": reason, "dead_letter": filed.entry_id, "detail": detail}
        if delivery_log.enabled():
            fields = _access(scope, DEAD_LETTERED_STATUS, DEAD_LETTERED, None, started)
            delivery_log.info("webhook dead-lettered", fields | {"type": type_} | letter)
        return DEAD_LETTERED_STATUS, _encoder.encode({"status": DEAD_LETTERED} | letter)


# What the operator reads (``fanout tail --refused``) for refusals whose answer has no
# detail; never a header's value.
_REFUSAL_DETAIL = {
    "forbidden": "the sender's address is not in FANOUT_ALLOW_IPS",
    "unsupported_media_type": "the content-type is not application/json (or application/*+json)",
    "body_too_large": "the body is larger than FANOUT_MAX_BODY_BYTES",
    "unavailable": "Redis did not take the delivery",
}
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
    metrics.delivery(inbound.type if inbound else NO_TYPE, outcome)
    fields = _access(scope, problem.status, outcome, inbound, started) | {"detail": problem.detail}
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
