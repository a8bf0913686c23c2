"""The receiver with a span per delivery: the layer FANOUT_TRACING=1 puts on it.

Imported only with tracing on (it imports OpenTelemetry); with tracing off the app
mounts the plain ``Receiver`` and none of this runs. ``TracedReceiver`` is that
receiver with its steps wrapped, nothing patched into the plain one.

One span per delivery, ``POST /webhooks/voucherify`` (kind SERVER), the child of the
sender's W3C ``traceparent`` header where it sends a valid one (its ``tracestate``
kept with it), else a new trace. Its
steps are events inside it (their times), in order: ``verified`` (absent when the
signature did not match), ``decoded`` or ``unpublishable``, ``published`` and
``dead_lettered``. What they found is in the span's attributes:

- ``fanout.outcome``: ``accepted``, ``duplicate``, ``conflict``, ``stale``,
  ``dead_lettered``, or the refusal's error code (``invalid_signature``,
  ``unavailable``, ...);
- ``fanout.type``, ``fanout.id``, ``fanout.request_id`` once the body is decoded;
  ``messaging.destination.name`` (the stream) and ``fanout.entry_id`` once stored;
  ``fanout.reason`` and ``fanout.dead_letter`` (its entry id) for a dead letter;
- HTTP's: ``http.request.method``, ``http.route``, ``http.response.status_code``,
  ``client.address``; a 5xx sets the span's status to error.

Steps as events, not spans of their own, and events without attributes: the SDK's
cost is per span and per attribute, most of it the OTLP encoding. Measured in
process (a loop of 10,000, the SDK's BatchSpanProcessor and OTLP protobuf encoding,
loaded 2-core machine): one span with attributes 78-81 us, plus 7-8 us per bare
event, plus 7-11 us more when each event carries its attributes; a first version
with four spans a delivery cost 4.1x the receiver's own CPU (bench/tracing.py, one
round), this one 2.9x (median of 9; docs/operations.md, "Tracing").

The entry's ``traceparent`` field is this span's context: a consumer's span is its
child.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, get_current_span
from starlette.types import Message, Receive, Scope, Send

from ..config import Settings
from ..domain.inbound import Inbound, Unpublishable, decode
from ..domain.outbound import Publication
from ..streams.dead_letters import Filed
from ..streams.keys import Keys
from ..streams.publisher import Outcome, Publisher
from ..streams.refusals import Refusals
from ..tracing import SCOPE, sdk
from .receiver import Receiver
from .signature import Verifier

ROUTE = "/webhooks/voucherify"
SPAN_NAME = f"POST {ROUTE}"
_answer = msgspec.json.Decoder(dict[str, Any])


class _TracedVerifier:
    """The verifier, noting ``verified`` on the delivery's span."""

    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier

    def verify(self, body: bytes, headers: Sequence[str]) -> str | None:
        project = self._verifier.verify(body, headers)
        get_current_span().add_event("verified")
        return project


class _TracedPublisher:
    """The publisher, writing the delivery span's context with the entry and noting
    what became of it on that span."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._keys = publisher.keys

    def __getattr__(self, name: str) -> Any:  # anything else the receiver asks for
        return getattr(self._publisher, name)

    async def publish(self, publication: Publication, traceparent: str | None = None) -> Outcome:
        span = get_current_span()
        outcome = await self._publisher.publish(publication, sdk.traceparent(span))
        span.add_event("published")
        span.set_attributes(
            {
                "fanout.outcome": type(outcome).__name__.lower(),
                "messaging.destination.name": _stream(self._keys, publication),
                "fanout.entry_id": outcome.entry_id,
            }
        )
        return outcome

    async def dead_letter(
        self, reason: str, detail: str, body: bytes, received_at: datetime
    ) -> Filed:
        filed = await self._publisher.dead_letter(reason, detail, body, received_at)
        span = get_current_span()
        span.add_event("dead_lettered")
        span.set_attributes({"fanout.reason": reason, "fanout.dead_letter": filed.entry_id})
        if reason != "conflict":  # a conflict's outcome is the publish's, answered duplicate
            span.set_attribute("fanout.outcome", "dead_lettered")
        return filed


def _stream(keys: Keys, publication: Publication) -> str:
    """The stream a publication goes to, as the publisher picks it."""
    match publication.kind:
        case "completed":
            return keys.completed(publication.type)
        case "progress":
            return keys.progress(publication.type)
        case "events":
            return keys.events(publication.type)
        case "custom":
            return keys.custom()


def _decode(body: bytes) -> Inbound:
    """``inbound.decode``, noting the body's kind on the delivery's span."""
    span = get_current_span()
    try:
        inbound = decode(body)
    except Unpublishable:
        span.add_event("unpublishable")  # its reason: the dead letter's, below
        raise
    span.add_event("decoded")
    span.set_attributes(
        {
            "fanout.type": inbound.type,
            "fanout.id": inbound.id,
            "fanout.request_id": inbound.request_id or "",
        }
    )
    return inbound


class TracedReceiver(Receiver):
    """The receiver, each delivery in a span (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        refusals: Refusals | None = None,
        *,
        provider: TracerProvider,
    ) -> None:
        super().__init__(settings, publisher, refusals)
        self.tracer = provider.get_tracer(SCOPE)
        self.publisher = _TracedPublisher(publisher)  # type: ignore[assignment]
        self.verifier = _TracedVerifier(self.verifier)  # type: ignore[assignment]
        self.decode = _decode

    def reload_secrets(self) -> bool:
        reloaded = super().reload_secrets()
        if reloaded:
            self.verifier = _TracedVerifier(self.verifier)  # type: ignore[assignment]
        return reloaded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parent = sdk.context(*_trace_headers(scope))
        client = scope.get("client")
        attributes = {
            "http.request.method": "POST",
            "http.route": ROUTE,
            "client.address": client[0] if client else "",
        }
        with self.tracer.start_as_current_span(
            SPAN_NAME, context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            await super().__call__(scope, receive, _answered(span, send))


def _trace_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """The request's W3C ``traceparent`` and ``tracestate`` headers, None where absent."""
    parent = state = None
    for key, value in scope["headers"]:
        if key == b"traceparent":
            parent = bytes(value)
        elif key == b"tracestate":
            state = bytes(value)
    return parent, state


def _answered(span: Span, send: Send) -> Callable[[Message], Any]:
    """``send``, noting the answer's status on the delivery's span, and a refusal's
    error code as its outcome (a 2xx's outcome is noted where it is decided)."""
    refused = False

    async def sending(message: Message) -> None:
        nonlocal refused
        if message["type"] == "http.response.start":
            status = message["status"]
            span.set_attribute("http.response.status_code", status)
            refused = status >= 300
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        elif refused and message["type"] == "http.response.body":
            try:
                error = _answer.decode(message.get("body", b"")).get("error")
            except msgspec.DecodeError:
                error = None
            if isinstance(error, str):
                span.set_attribute("fanout.outcome", error)
        await send(message)

    return sending
