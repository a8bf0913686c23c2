"""The OpenTelemetry SDK set up from the standard variables, and the W3C trace context.

Imported only with tracing on (``service.tracing`` says why). The SDK reads most
variables itself: ``Resource.create`` reads OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES, ``TracerProvider`` reads OTEL_TRACES_SAMPLER(_ARG) and
OTEL_SDK_DISABLED, ``BatchSpanProcessor`` OTEL_BSP_*, the OTLP exporter
OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout, compression). What the SDK leaves
to a distro is which exporter OTEL_TRACES_EXPORTER names: the SDK resolves it only in
its private ``_configuration`` module, so ``exporters`` does it here with the public
entry points the exporter packages register (``opentelemetry_traces_exporter``).
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..config import ConfigError
from . import SERVICE_NAME

#: OTEL_EXPORTER_OTLP_PROTOCOL -> the exporter's entry point. The specification's
#: default protocol is http/protobuf, the one the ``[otel]`` extra installs.
_OTLP = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_ENTRY_POINTS = "opentelemetry_traces_exporter"

logger = logging.getLogger("service")

#: W3C trace context: the ``traceparent`` (and ``tracestate``) header and entry field.
propagator = TraceContextTextMapPropagator()


def disabled() -> bool:
    """OTEL_SDK_DISABLED=true: the SDK would make no span; then nothing is traced here
    either (the plain receiver, no ``traceparent`` written)."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def exporters() -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names (comma-separated; default ``otlp``;
    ``none``: none). ``otlp`` follows OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
    OTEL_EXPORTER_OTLP_PROTOCOL (default http/protobuf); any other name is an installed
    exporter's entry point (``console``, ``otlp_proto_grpc``, ...). ``ConfigError`` names
    the variable of a name that is not installed. Read from this process's environment,
    as the SDK reads the rest."""
    env = os.environ
    names = env.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    if names.lower() == "none":
        return []
    found: list[SpanExporter] = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        variable = "OTEL_TRACES_EXPORTER"
        if name == "otlp":
            variable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
            protocol = env.get(variable, "").strip()
            if not protocol:
                variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
                protocol = env.get(variable, "").strip() or "http/protobuf"
            if protocol not in _OTLP:
                raise ConfigError(variable, f"{protocol!r} is not one of {', '.join(_OTLP)}")
            name = _OTLP[protocol]
        loaded = entry_points(group=_ENTRY_POINTS, name=name)
        if not loaded:
            installed = ", ".join(sorted(e.name for e in entry_points(group=_ENTRY_POINTS)))
            raise ConfigError(variable, f"no span exporter {name!r} installed ({installed})")
        found.append(next(iter(loaded)).load()())
    return found


def provider_from_env() -> TracerProvider | None:
    """A tracer provider for this process as its OTEL_* variables say, exporting in
    batches; None with OTEL_SDK_DISABLED=true. Not made global: the receiver's spans
    go to it alone (a consumer application's own provider stays its own)."""
    env = os.environ
    if disabled():
        return None
    named = env.get("OTEL_SERVICE_NAME", "").strip() or "service.name=" in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    # Attributes given here win over the variables': the default name only where none
    # is set. process.pid tells the workers of `fanout serve --workers N` apart.
    ours: dict[str, str | int] = {"process.pid": os.getpid()}
    resource = Resource.create(ours if named else {**ours, "service.name": SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    made = exporters()
    for exporter in made:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    logger.info(
        "tracing on: a span per delivery, service.name %s, exported by %s",
        resource.attributes.get("service.name"),
        ", ".join(type(e).__name__ for e in made) or "nothing (OTEL_TRACES_EXPORTER=none)",
    )
    return provider


def traceparent(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span``; None for an invalid span (no trace)."""
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context=set_span_in_context(span))
    return carrier.get("traceparent")


def context(value: str | bytes | None, state: bytes | None = None) -> Context | None:
    """The trace context a ``traceparent`` header or entry field names, with the
    vendors' ``tracestate`` where the sender sent one; None when absent or not a valid
    W3C traceparent (then a span starts a new trace)."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    carrier = {"traceparent": text}
    if state:
        carrier["tracestate"] = state.decode("latin-1")
    found = propagator.extract(carrier)
    return found or None
