"""OpenTelemetry tracing, optional: the ``[otel]`` extra, switched on by FANOUT_TRACING=1.

What is traced (docs/operations.md, "Tracing"):

- each delivery, in the receiver (``http.tracing``): a server span started from the
  sender's W3C ``traceparent`` header where it sends one, with its steps (verified,
  decoded, published or dead-lettered) as events; its context is written with the
  entry, as its ``traceparent`` field (and the CloudEvents ``traceparent`` attribute);
- each handler call of a ``Consumer`` (``consumer.tracing``): a ``process <stream>``
  span, child of the entry's ``traceparent``, with the outcome (acked, failed, poison).

Configured the OpenTelemetry way: the SDK's own variables (``OTEL_SERVICE_NAME``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_EXPORTER``, ``OTEL_TRACES_SAMPLER``,
``OTEL_SDK_DISABLED``, ...), read from the process environment by ``sdk`` and the SDK
itself; ``fanout serve --workers N`` passes them on to every worker, and each worker
process exports its own spans.

Nothing in this module imports OpenTelemetry; ``sdk`` does, and only code that runs
with tracing on imports it: with tracing off, ``opentelemetry`` never enters
``sys.modules`` (tests/tracing pins it), and a delivery costs what it did without it.
"""

from __future__ import annotations

from importlib import metadata

#: What a user runs when tracing is asked for and the extra is missing.
INSTALL = "pip install 'voucherify-fanout[otel]'"
#: The instrumentation scope of every span of this library.
SCOPE = "voucherify-fanout"
#: ``service.name`` of the receiver's spans when neither OTEL_SERVICE_NAME nor
#: OTEL_RESOURCE_ATTRIBUTES names one.
SERVICE_NAME = "voucherify-fanout"


def installed() -> bool:
    """True when the extra's SDK is installed (read from the package metadata: nothing
    is imported)."""
    try:
        metadata.version("opentelemetry-sdk")
    except metadata.PackageNotFoundError:
        return False
    return True
