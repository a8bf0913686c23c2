"""A span around each handler call of a ``Consumer`` (tracing on: ``service.tracing``).

Imported only when a consumer traces (``Consumer(tracing=True)``, or FANOUT_TRACING=1
in its environment): it imports OpenTelemetry. The span continues the delivery's
trace: its parent is the entry's ``traceparent`` field, the context of the receiver's
span of the delivery, so the POST and every handling of the entry are one trace; an
entry without the field (written with tracing off) starts a new one.

Named and attributed as OpenTelemetry's messaging conventions say for a consumer's
processing (``process <stream>``, kind CONSUMER, ``messaging.*``), plus ours:
``fanout.type``, ``fanout.id``, ``fanout.deliveries`` and ``fanout.outcome``: ``acked``
(the handler returned), ``failed`` (it raised or timed out: left pending, to be
retried), ``poison`` (dead-lettered and acknowledged), ``trimmed``. A failure sets the
span's status to error with the consumer's message (the handler's exception, its
timeout, or why the entry is poison).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from ..domain.outbound import TRACEPARENT
from ..tracing import SCOPE, sdk

#: Outcomes that are failures, for the span's status.
_FAILURES = frozenset({"failed", "poison", "trimmed"})
_FIELD = TRACEPARENT.encode()


class Settled:
    """What became of one entry, told by the handling code to its span."""

    __slots__ = ("error", "outcome")

    def __init__(self) -> None:
        self.outcome = "failed"  # until told otherwise: an unexpected end is a failure
        self.error = ""

    def done(self, outcome: str, error: str = "") -> None:
        self.outcome = outcome
        self.error = error


class HandlerSpans:
    """The spans of one consumer's handler calls, from ``provider`` (default: the
    application's global tracer provider, as its OpenTelemetry set-up made it)."""

    def __init__(self, group: str, consumer: str, provider: TracerProvider | None = None) -> None:
        self._tracer = (provider or trace.get_tracer_provider()).get_tracer(SCOPE)
        self._group = group
        self._consumer = consumer

    @contextlib.contextmanager
    def handling(
        self, stream: str, entry_id: str, fields: Mapping[bytes, bytes] | None, deliveries: int
    ) -> Iterator[Settled]:
        """The span of one entry's handling, current while it runs (so the handler's own
        spans are its children)."""
        fields = fields or {}
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "redis",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": stream,
            "messaging.consumer.group.name": self._group,
            "messaging.client.id": self._consumer,
            "messaging.message.id": entry_id,
            "fanout.type": fields.get(b"type", b"").decode("utf-8", "replace"),
            "fanout.id": fields.get(b"id", b"").decode("utf-8", "replace"),
            "fanout.deliveries": deliveries,
        }
        settled = Settled()
        with self._tracer.start_as_current_span(
            f"process {stream}",
            context=sdk.context(fields.get(_FIELD)),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            yield settled
            span.set_attribute("fanout.outcome", settled.outcome)
            if settled.outcome in _FAILURES:
                span.set_status(Status(StatusCode.ERROR, settled.error or settled.outcome))
