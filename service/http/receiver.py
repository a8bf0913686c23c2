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
from ..streams.publisher import Accepted, Conflict, Duplicate, Publisher, Stale
from ..streams.refusals import DETAIL_CHARS, Refusal, Refusals
from . import intake
from .errors import BackPressure, BodyTooLarge, Problem, Unavailable, render
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
    """``POST /webhooks/voucherify``, with the state it needs, built once per app.

    One flat coroutine per delivery (``__call__``): the intake checks, the body, the
    signature, the decode, the publication and the answer, with no request object,
    no nested coroutine of its own and one ``send`` pair for the answer (the front
    door writes it to the socket at once). Its steps are called through attributes
    (``self.verifier.verify``, ``self.decode``, ``self.publisher.publish`` and
    ``.dead_letter``) so a wrapper (tracing) can replace them on its instance.
    """

    def __init__(
        self, settings: Settings, publisher: Publisher, refusals: Refusals | None = None
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        #: Per-minute refusal counts for the dashboard (flushed to Redis by the app).
        self.refusals = refusals
        self.verifier = Verifier(webhook_secrets(settings))
        self.decode = decode
        #: Older deliveries are held as ``stale`` (``inbound.check_age``).
        self.max_age = settings.age_limit()
        self._allow_ips = settings.allow_ips
        self._max_body = settings.max_body_bytes

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
        """Answer one delivery. Every answer is logged once at info level (a 503 at
        warning): status, outcome, type, id and duration; never the body or the
        signature."""
        started = time.perf_counter()
        inbound: Inbound | None = None
        try:
            content_type, declared, signatures = intake.head_of(scope)
            if self._allow_ips is not None:
                intake.check_client(scope, self._allow_ips)
            intake.check_declared_length(declared, self._max_body)
            intake.check_media_type(content_type)
            message = await receive()
            if message["type"] != "http.request":
                raise intake.ClientGone()
            body: bytes = message.get("body", b"")
            if message.get("more_body", False):
                body = await intake.read_rest(receive, body, self._max_body)
            elif len(body) > self._max_body:
                raise BodyTooLarge()
            project = self.verifier.verify(body, signatures)
            # Authentic from here on: stored (published or dead-lettered) and answered 2xx,
            # or 503 when Redis cannot take it; never refused.
            received_at = datetime.now(UTC)
            try:
                inbound = self.decode(body)
                check_project(inbound, project)
                check_age(inbound, received_at, self.max_age)
            except Unpublishable as unpublishable:
                status, answer = await self._dead_letter(
                    scope, body, received_at, unpublishable, started
                )
            else:
                outcome = await self.publisher.publish(outbound.publication(inbound, received_at))
                if type(outcome) is Accepted:
                    status = 202
                    answer = _encoder.encode(
                        {
                            "status": "accepted",
                            "id": inbound.id,
                            "stream": outcome.stream,
                            "entry_id": outcome.entry_id,
                        }
                    )
                    _count_accepted(inbound)
                else:
                    if type(outcome) is Conflict:
                        await self.publisher.dead_letter(
                            "conflict",
                            f"same id and request_id as entry {outcome.entry_id},"
                            " different content",
                            body,
                            received_at,
                        )
                    # Duplicates, conflicts and stale progress all mean: already have it.
                    status = 200
                    answer = _encoder.encode(
                        {"status": "duplicate", "id": inbound.id, "entry_id": outcome.entry_id}
                    )
                label = _LABELS[type(outcome)]
                metrics.delivery(inbound.type, label)
                if delivery_log.enabled():
                    delivery_log.delivery(
                        "webhook accepted" if status == 202 else "webhook duplicate",
                        scope["method"],
                        scope["path"],
                        status,
                        label,
                        inbound.type,
                        inbound.id,
                        inbound.request_id,
                        round((time.perf_counter() - started) * 1000, 1),
                    )
            headers = [_JSON, (b"content-length", b"%d" % len(answer))]
        except intake.ClientGone:
            metrics.request_seconds(time.perf_counter() - started)
            return
        except Exception as exc:
            problem = self._refusal(exc, scope, inbound, started)
            if problem is None:
                metrics.request_seconds(time.perf_counter() - started)
                raise
            status, headers, answer = render(problem)
            headers.append((b"content-length", b"%d" % len(answer)))
        metrics.request_seconds(time.perf_counter() - started)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    def _refusal(
        self, exc: Exception, scope: Scope, inbound: Inbound | None, started: float
    ) -> Problem | None:
        """The answer to a delivery that failed with ``exc``, counted and logged; None
        for an error that is not a refusal (a bug: uvicorn answers 500)."""
        if isinstance(exc, RedisUnavailable):
            unavailable = Unavailable()
            cause = exc.__cause__ or exc
            self._count(
                _refused(scope, unavailable, inbound, cause, started), scope, unavailable, cause
            )
            return unavailable
        if isinstance(exc, StreamFull):
            # Nothing was trimmed to make room: the sender retries once consumers catch up.
            full = BackPressure(str(exc))
            label = _refused(scope, full, inbound, exc, started, outcome=exc.outcome)
            self._count(label, scope, full, exc)
            return full
        if isinstance(exc, Problem):
            self._count(_refused(scope, exc, inbound, exc.__cause__, started), scope, exc, None)
            return exc
        return None

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


#: The metrics label of each outcome.
_LABELS = {Accepted: "accepted", Duplicate: "duplicate", Conflict: "conflict", Stale: "stale"}


def _count_accepted(inbound: Inbound) -> None:
    """The counters of a newly published event beside its delivery's."""
    if isinstance(inbound, WebhookDelivery):
        if not inbound.schema_valid:
            metrics.schema_drift(inbound.type)
    elif not isinstance(inbound, CustomBody) and inbound.completed:
        failed_count = getattr(inbound.result, "failed_count", None)
        metrics.completion(inbound.type, inbound.status, failed_count)
